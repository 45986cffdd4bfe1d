"""`python -m workflows.cli` runs dockyard-cli (and is the bundled `dockyard-cli` executable's
script, build_installer.spec)."""

import sys

from workflows import frozen

frozen.enter()  # a bundle's spawned step process or Python mode ends here

from workflows.cli import main  # noqa: E402

sys.exit(main())
