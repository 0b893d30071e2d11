"""The Python examples of docs/drivers/redis.md run as written, on the Redis under test."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from jobs_redis.testing import delete_prefix

PAGE = pathlib.Path(__file__).resolve().parents[3] / "docs" / "drivers" / "redis.md"


def test_redis_driver_docs_examples_run(tmp_path: pathlib.Path, redis_url: str, prefix: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(blocks).replace("prefix=docs_example", f"prefix={prefix}"))
    env = {**os.environ, "JOBS_TEST_REDIS_URL": redis_url}
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        delete_prefix(f"{redis_url}?prefix={prefix}")
    assert result.returncode == 0, result.stderr
    assert "welcome ada" in result.stdout
    assert "welcome grace" not in result.stdout
    assert "welcome order 7" in result.stdout
    assert "welcome order 8" not in result.stdout
    assert "'delayed': 1" in result.stdout
