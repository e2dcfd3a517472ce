"""``python -m cachecluster`` runs the command line."""

import sys

from cachecluster.cli.main import main

sys.exit(main())
