"""Benchmarks of the database driver (SQLite, PostgreSQL, MySQL/MariaDB).

``run(backend, options)`` runs the shared measurements of :mod:`harness` on
fresh tables of one database (prefixed ``bench_<run>_``, dropped afterwards:
runs do not inherit each other's dead rows, which a server without autovacuum
would keep). The worker side runs in a subprocess:
``python benchmarks/database.py worker ...``.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from typing import Any

import harness
import sqlalchemy as sa
from jobs_database.schema import build_tables, drop_all

BACKEND = harness.Backend(worker_script=__file__)


def run(backend: str, options: dict[str, Any]) -> dict[str, float]:
    """Measure one database; return the figures named in benchmarks/run.py."""
    scratch = tempfile.mkdtemp(prefix="jobs-bench-")
    base = str(options["url"]).replace("{tmp}", scratch)
    prefix = f"bench_{uuid.uuid4().hex[:6]}_"
    url = base + ("&" if "?" in base else "?") + f"table_prefix={prefix}"
    try:
        return harness.measure(url, options, BACKEND)
    finally:
        engine = sa.create_engine(base)
        try:
            drop_all(engine, build_tables(prefix))
        finally:
            engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(harness.worker_main(sys.argv[2:], BACKEND))
    sys.exit("usage: python benchmarks/run.py (this module is the database part of the harness)")
