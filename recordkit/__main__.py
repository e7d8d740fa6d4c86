"""`python -m recordkit`: the `recordkit` command without the console script (tests, workers)."""

import sys

from recordkit.cli import main

sys.exit(main())
