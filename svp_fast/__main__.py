"""``python -m svp_fast`` runs the ``svp-fast`` command."""

import sys

from .cli import main

sys.exit(main())
