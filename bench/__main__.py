"""`python -m bench`: runs the benchmark suite."""

import sys

from bench.run import main

sys.exit(main())
