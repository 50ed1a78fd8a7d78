"""`python -m wskdbg` is the `wskdbg` command."""

import sys

from wskdbg.cli import main

sys.exit(main())
