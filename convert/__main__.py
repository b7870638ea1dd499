"""Entry point for ``python -m convert``."""

from __future__ import annotations

from convert.cli import main

if __name__ == "__main__":
    main()
