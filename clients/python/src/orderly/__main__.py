"""``python -m orderly``: see :mod:`orderly.cli`."""

import sys

from .cli import main

sys.exit(main())
