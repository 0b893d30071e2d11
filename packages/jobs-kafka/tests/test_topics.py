"""Queue topics a Kafka team can operate: delayed-only queues, per-queue topic settings, partitions."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from jobs_core.cli import cli
from jobs_core.errors import ConfigurationError, UnsupportedOperation
from jobs_kafka import KafkaDriver
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topic_settings import TopicSpec

from .conftest import ON_TANSU
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


def test_queue_topics_are_created_with_the_settings_for_all_queues_and_their_own(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver(
        partitions=2,
        **{
            "topic_config.retention.ms": 86_400_000,
            "queue[big].partitions": 3,
            "queue[big].retention.ms": 3_600_000,
            "queue[big].max.message.bytes": 2_000_000,
        },
    )
    driver.enqueue(jobs("big", 1) + jobs("small", 1))
    big, small = driver.names.queue("big"), driver.names.queue("small")
    shape = driver.admin.describe([big, small])
    assert [len(shape[t]["partitions"]) for t in (big, small)] == [3, 2]
    configs = driver.admin.configs([big, small])
    assert (configs[big]["retention.ms"], configs[big]["max.message.bytes"]) == ("3600000", "2000000")
    assert configs[small]["retention.ms"] == "86400000"
    # The delay tiers keep the driver's own settings, not a queue's retention.
    driver.enqueue(jobs("big", 1, available_at=time.time() + 600))
    tier = driver.names.tier_topic("big", 300.0)
    assert len(driver.admin.describe([tier])[tier]["partitions"]) == 2
    assert driver.admin.configs([tier])[tier].get("retention.ms") != "3600000"


def test_a_topic_with_fewer_partitions_than_asked_is_named_in_a_warning(
    make_driver: Callable[..., KafkaDriver], caplog: pytest.LogCaptureFixture
) -> None:
    make_driver(partitions=1).enqueue(jobs("grow", 1))
    topic = f"{make_driver().settings.topic_prefix}grow"
    with caplog.at_level(logging.WARNING, logger="jobs_kafka.topics"):
        later = make_driver(partitions=4, **{"topic_config.retention.ms": 60_000})
        later.enqueue(jobs("grow", 1))
    warned = [r.getMessage() for r in caplog.records]
    assert any(
        f"kafka topic {topic} has 1 partition, fewer than partitions=4" in m and "grow_partitions=true" in m
        for m in warned
    ), warned
    assert any(f"kafka topic {topic} has retention.ms=" in m and "retention.ms=60000" in m for m in warned), (
        warned
    )
    assert len(later.admin.describe([topic])[topic]["partitions"]) == 1  # not changed without asking


@pytest.mark.xfail(
    ON_TANSU, strict=True, raises=UnsupportedOperation, reason="Tansu does not implement CreatePartitions"
)
def test_grow_partitions_adds_partitions_to_an_existing_queue_topic(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    make_driver(partitions=1).enqueue(jobs("grow", 1))
    grown = make_driver(grow_partitions="true", **{"queue[grow].partitions": 3})
    grown.enqueue(jobs("grow", 1))
    topic = grown.names.queue("grow")
    assert len(grown.admin.describe([topic])[topic]["partitions"]) == 3


def test_a_broker_without_create_partitions_is_named_when_growth_is_asked(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    make_driver(partitions=1).enqueue(jobs("grow", 1))
    grown = make_driver(grow_partitions="true", partitions=2)
    if not ON_TANSU:  # a real cluster grows the topic (the test above)
        grown.enqueue(jobs("grow", 1))
        return
    with pytest.raises(
        UnsupportedOperation, match=r"CreatePartitions of t\w+-grow \(from 1 to 2 partitions\)"
    ):
        grown.enqueue(jobs("grow", 1))


def test_topic_settings_are_validated_with_errors_naming_the_setting() -> None:
    base = "kafka://localhost:9092?"
    cases = {
        "topic_config.retention.msx=1": "unknown Kafka topic config 'retention.msx'",
        "topic_config.cleanup.policy=compact": "queue topics must use cleanup.policy=delete",
        "queue[a].retention.ms=soon": "queue[a].retention.ms (Kafka topic config retention.ms) must be",
        "queue[a].partitions=0": "queue[a].partitions must be at least 1",
        "queue[a__b].partitions=2": "invalid queue name 'a__b'",
        "queue[a]partitions=2": "queue[<queue>].partitions",
        "replication_factor=2&topic_config.min.insync.replicas=3": "min.insync.replicas=3 exceeds",
        "grow_partitions=maybe": "grow_partitions must be true or false",
    }
    for query, message in cases.items():
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            KafkaSettings.parse(base + query, {})
    settings = KafkaSettings.parse(
        None,
        {
            "brokers": "localhost:9092",
            "topic_config": {"retention.ms": 1000},
            "queue_topics": {"emails": {"partitions": 6, "min.insync.replicas": 2}},
        },
    )
    assert settings.topic_spec("emails") == TopicSpec(
        6, -1, {"retention.ms": "1000", "min.insync.replicas": "2"}
    )
    assert settings.topic_spec("other") == TopicSpec(1, -1, {"retention.ms": "1000"})
