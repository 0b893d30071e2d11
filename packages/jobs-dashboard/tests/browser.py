"""Helpers of the browser tests: a ``jobs dashboard`` process and Debian's headless Chromium.

The dashboard runs as a user runs it, ``python -m jobs_core dashboard --url
URL`` in a process of its own; Playwright (from PyPI) drives the system's
``/usr/bin/chromium`` (``playwright install`` is not needed). Without
Chromium the tests are skipped on a developer machine and fail under ``CI``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("JOBS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> str:
    """The Chromium binary; skips (or fails under CI) when it is missing."""
    if os.path.exists(CHROMIUM) or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def dashboard_process(url: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``jobs dashboard --url URL`` on a free local port; yield its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "jobs_core", "dashboard", "--url", url, "--port", str(port)]
    command += ["--sample-interval", "1", "--log-level", "WARNING", *extra]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"jobs dashboard exited with {process.returncode}: {output}")
            try:
                with urllib.request.urlopen(f"{base}/static/dashboard.css", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError("jobs dashboard did not answer within 60 s") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
