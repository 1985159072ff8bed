"""What the ``bayes-pmf`` command needs before the package has imported: Ctrl-C during
the import (several seconds on a loaded machine: pandas, SciPy, ArviZ) is the user
stopping the command, not an error, so it prints one line instead of a traceback."""

from __future__ import annotations

import os
import signal
import sys


def is_the_command() -> bool:
    """Whether this process is the command being started: ``bayes-pmf`` (the console
    script) or ``python -m bayes_pmf`` (while runpy imports the package, argv[0] is
    "-m")."""
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or first.endswith(("bayes-pmf", "bayes-pmf.exe"))


def _caused_by_interrupt(error: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt is ``error`` or in its chain of causes: Ctrl-C inside
    a class body's ``__set_name__`` (matplotlib's import has them) surfaces as
    "RuntimeError: Error calling __set_name__" with the interrupt as its cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def quiet_interrupt() -> None:
    """An uncaught KeyboardInterrupt, or an error it caused, prints "interrupted" and the
    process exits as killed by SIGINT (status 130 in a shell: Python does so itself for
    a bare KeyboardInterrupt, this hook for a wrapped one); every other exception as
    before."""
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        elif _caused_by_interrupt(value):
            print("interrupted", file=sys.stderr)
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        else:
            previous(kind, value, traceback)

    sys.excepthook = hook
