"""Benchmarks of the Redis driver (a module not named redis.py, which would hide redis-py).

``run(backend, options)`` runs the shared measurements of :mod:`harness` on a
fresh key prefix (``bench_<run>``, its keys deleted afterwards). The worker
side runs in a subprocess: ``python benchmarks/redis_bench.py worker ...``.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import harness
from jobs_redis.testing import delete_prefix

BACKEND = harness.Backend(worker_script=__file__)


def run(backend: str, options: dict[str, Any]) -> dict[str, float]:
    """Measure one Redis; return the figures named in benchmarks/run.py."""
    base = str(options["url"])
    url = base + ("&" if "?" in base else "?") + f"prefix=bench_{uuid.uuid4().hex[:6]}"
    try:
        return harness.measure(url, options, BACKEND)
    finally:
        delete_prefix(url)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(harness.worker_main(sys.argv[2:], BACKEND))
    sys.exit("usage: python benchmarks/run.py (this module is the Redis part of the harness)")
