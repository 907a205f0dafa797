"""`python -m mailer` is the `supportd` command."""

import sys

from mailer.cli import main

sys.exit(main())
