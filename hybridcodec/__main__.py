"""``python -m hybridcodec`` runs the command line (same as the ``hybridcodec`` script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
