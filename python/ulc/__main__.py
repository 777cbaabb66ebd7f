"""``python -m ulc ...``: the ``ulc`` command (ulc/_cli.py)."""
import sys

from ulc._cli import main

sys.exit(main())
