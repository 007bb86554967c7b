"""``python -m fnlab.cli``: the ``fnlab`` command."""

import sys

from fnlab.cli import main

sys.exit(main())
