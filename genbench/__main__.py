"""``python -m genbench ...``: the same as the ``genbench`` command."""

import sys

from genbench.cli import main

sys.exit(main())
