"""The ``bayes-pmf`` command: argument parsing and printing only (``cli.main``), and the
``recommend``/``similar`` commands (``cli.recommend``)."""

from .main import main

__all__ = ["main"]
