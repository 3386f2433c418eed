import sys

try:
    from .cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C before the command started (or while it was already ending)
    sys.stderr.write("\nfastmask: interrupted\n")
    code = 3
sys.exit(code)
