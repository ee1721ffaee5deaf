"""`python -m poller` is the `poller` command."""

import sys

from poller.cli.main import main

sys.exit(main())
