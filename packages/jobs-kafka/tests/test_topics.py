"""Queue topics a Kafka team can operate: delayed-only queues, per-queue topic settings, partitions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from click.testing import CliRunner
from jobs_core.cli import cli
from jobs_kafka import KafkaDriver

from .helpers import jobs


def test_a_queue_holding_only_delayed_jobs_is_listed_counted_and_purged_by_the_cli(
    make_driver: Callable[..., KafkaDriver], kafka_url: Callable[..., str]
) -> None:
    driver = make_driver()
    driver.enqueue(jobs("later", 3, available_at=time.time() + 600))
    assert driver.queues() == ["later"]
    runner = CliRunner()
    shown = runner.invoke(cli, ["stats", "--url", kafka_url(), "--json", "--queue", "later"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["queues"]["later"]["delayed"] == 3
    purged = runner.invoke(cli, ["purge", "--url", kafka_url(), "--yes", "--json", "later"])
    assert purged.exit_code == 0, purged.output
    assert json.loads(purged.output) == {"queue": "later", "purged": 3}
    assert driver.stats("later").delayed == 0
