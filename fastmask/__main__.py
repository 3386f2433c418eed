import os
import sys

try:
    from . import cli

    code = cli.main()
    interrupted = cli.INTERRUPTED
except KeyboardInterrupt:  # Ctrl-C before the command started (or while it was already ending)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the process ends: no second interruption
    sys.stderr.write("\nfastmask: interrupted\n")
    code, interrupted = 3, True
if interrupted:
    # The run's state is saved; skip the interpreter's teardown (Dask's and multiprocessing's
    # exit hooks), where a Ctrl-C still in flight would end the process by SIGINT instead of 3.
    try:  # multiprocessing's own exit step: stops children, frees named semaphores
        import multiprocessing.util

        multiprocessing.util._exit_function()
    except BaseException:  # noqa: BLE001 - best effort on the way out
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
sys.exit(code)
