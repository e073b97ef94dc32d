"""`python -m lab up|down|status|restart NAME`: the lab hosts (lab/harness.py)."""

import sys

from lab.harness import main

sys.exit(main())
