"""``python -m imagelearn ...``: the ``imagelearn`` command (for ``python -X importtime`` and
environments without the console script)."""

import sys

from imagelearn.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
