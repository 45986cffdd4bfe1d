"""`python -m workflows.cli` runs dockyard-cli."""

import sys

from workflows.cli import main

sys.exit(main())
