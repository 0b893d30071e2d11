"""``python -m jobs_core``: the ``jobs`` command line."""

from __future__ import annotations

from jobs_core.cli import main

if __name__ == "__main__":
    main()
