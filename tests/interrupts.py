"""Commands that a test interrupts (SIGINT, as Ctrl-C sends) start with SIGINT's default
action, whatever the test run itself inherited: a shell without job control starts a
background job (``nohup ... &``, some CI runners) with SIGINT ignored, its children
inherit that, and Python then never installs its KeyboardInterrupt handler, so the
command under test would ignore the test's Ctrl-C and run on (measured: a
``--dask-local`` fit still sampling two minutes after the signal)."""

from __future__ import annotations

import signal


def sigint_as_default() -> None:
    """``preexec_fn`` of a command a test will interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
