"""Imported first by the fork server that forks a LocalCluster's workers: it makes that
process, and so every worker it forks, ignore SIGINT (Ctrl-C is the driver's to handle).

The fork server restores, in each child, the SIGINT handler it had after its preloads.
"""
import signal
import threading

if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
