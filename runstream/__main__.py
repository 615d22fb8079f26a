"""``python -m runstream`` is the ``runstream`` command."""

from __future__ import annotations

import sys

from runstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
