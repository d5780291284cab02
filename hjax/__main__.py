"""``python -m hjax verify [--quick] [--json PATH]`` — see :mod:`hjax.cli`."""

import sys

from .cli import main

sys.exit(main())
