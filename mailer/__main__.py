"""`python -m mailer` and the `supportd` command.

Light on purpose: each process of the parsing pool imports the program's main module again when it is
spawned (the `supportd` script or this module); importing the command line there cost every pool
process about half a second before it could load the parsers.
"""

import sys


def main() -> int:
    from mailer.cli import main as run_command

    return run_command()


if __name__ == "__main__":
    sys.exit(main())
