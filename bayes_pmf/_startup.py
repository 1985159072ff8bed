"""What the ``bayes-pmf`` command needs before the package has imported: Ctrl-C during
the import (several seconds on a loaded machine: pandas, SciPy, ArviZ) is the user
stopping the command, not an error, so it prints one line instead of a traceback."""

from __future__ import annotations

import sys


def is_the_command() -> bool:
    """Whether this process is the command being started: ``bayes-pmf`` (the console
    script) or ``python -m bayes_pmf`` (while runpy imports the package, argv[0] is
    "-m")."""
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or first.endswith(("bayes-pmf", "bayes-pmf.exe"))


def quiet_interrupt() -> None:
    """An uncaught KeyboardInterrupt prints "interrupted" (Python still exits as killed
    by SIGINT: status 130 in a shell); every other exception as before."""
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    sys.excepthook = hook
