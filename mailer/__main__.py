"""`python -m mailer` is the `supportd` command."""

import sys

from mailer.cli import main

if __name__ == "__main__":  # not when a worker process of the parsing pool imports this module
    sys.exit(main())
