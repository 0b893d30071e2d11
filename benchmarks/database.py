"""Benchmarks of the database driver (SQLite, PostgreSQL, MySQL/MariaDB).

``run(backend, options)`` runs the shared measurements of :mod:`harness` on
fresh queues of one database, with the tables prefixed ``bench_``. The worker
side runs in a subprocess: ``python benchmarks/database.py worker ...``.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import harness

PREFIX = "bench_"
BACKEND = harness.Backend(worker_script=__file__)


def _with_prefix(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"table_prefix={PREFIX}"


def run(backend: str, options: dict[str, Any]) -> dict[str, float]:
    """Measure one database; return the figures named in benchmarks/run.py."""
    scratch = tempfile.mkdtemp(prefix="jobs-bench-")
    url = _with_prefix(str(options["url"]).replace("{tmp}", scratch))
    return harness.measure(url, options, BACKEND)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(harness.worker_main(sys.argv[2:], BACKEND))
    sys.exit("usage: python benchmarks/run.py (this module is the database part of the harness)")
