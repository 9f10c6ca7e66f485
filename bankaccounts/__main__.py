"""`python -m bankaccounts`: the console entry point."""

import sys

from bankaccounts.cli import main

sys.exit(main())
