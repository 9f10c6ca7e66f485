"""`python bankaccounts/main.py`: serves the bank at http://localhost:8000."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts this directory first on sys.path, where module
    # names could shadow others; import the package from the repository instead.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    sys.path.insert(0, str(Path(here).parent))

    from bankaccounts.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
