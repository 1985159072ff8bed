"""``python -m bayes_pmf``: the ``bayes-pmf`` command."""

import sys

from .cli.main import main

sys.exit(main())
