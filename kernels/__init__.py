"""Numba kernels (installed as ``fastmask.kernels``).

Arrays in, arrays out: no I/O, no Python objects, no prints. A data error is a
returned status code, never an exception raised from compiled code; the public
API in ``fastmask`` turns statuses into clear exceptions.
"""
