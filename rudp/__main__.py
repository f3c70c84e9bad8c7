"""``python -m rudp``: the rudp command line."""

import sys

from .cli import main

sys.exit(main())
