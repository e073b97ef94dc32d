"""`python -m lab up|down|status|restart NAME`: the lab (lab/cli.py)."""

import sys

from lab.cli import main

sys.exit(main())
