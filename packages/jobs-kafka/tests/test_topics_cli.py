"""``jobs kafka topics ...`` and ``jobs kafka groups copy-offsets`` against the brokers under test."""

from __future__ import annotations

import json
import logging
import pathlib
import re
import shlex
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from jobs_core.cli import cli
from jobs_kafka import KafkaDriver
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.testing.broker import FAST_TEST_SETTINGS
from jobs_kafka.topic_settings import TopicSpec

from .conftest import ON_TANSU
from .helpers import jobs, reserve_until


def run(*args: str) -> tuple[int, str]:
    """Run ``jobs kafka ARGS`` (loaded through the ``jobs.cli`` entry point); exit status and output."""
    result = CliRunner().invoke(cli, ["kafka", *args])
    return result.exit_code, result.output


def as_json(*args: str) -> Any:
    code, output = run(*args, "--json")
    assert code == 0, output
    return json.loads(output)


def finish_two_of_five(make_driver: Callable[..., KafkaDriver], **params: object) -> None:
    """Five jobs in queue ``emails``; the group of ``params`` (or the test's) finishes the first two."""
    driver = make_driver(**params)
    driver.enqueue(jobs("emails", 5))
    done = reserve_until(driver, ["emails"], 2)
    assert [d.message.payload for d in done] == [0, 1]
    for delivery in done:
        driver.ack(delivery)
    driver.close()  # commits the finished offsets


def test_list_and_describe_show_partitions_replicas_configs_and_the_group_s_offsets(
    make_driver: Callable[..., KafkaDriver], kafka_url: Callable[..., str]
) -> None:
    url = kafka_url(**{"topic_config.retention.ms": 7_200_000})
    finish_two_of_five(make_driver, **{"topic_config.retention.ms": 7_200_000})
    make_driver().enqueue(jobs("later", 1, available_at=time.time() + 600))
    listed = {row["queue"]: row for row in as_json("topics", "list", "--url", url)}
    assert set(listed) == {"emails", "later"}
    emails = listed["emails"]
    assert (emails["partitions"], emails["committed"], emails["end"], emails["lag"]) == (1, 2, 5, 3)
    assert emails["replication_factor"] >= 1
    assert listed["later"]["exists"] is False  # only delayed jobs so far
    (described,) = as_json("topics", "describe", "emails", "--url", url)
    assert described["configs"]["retention.ms"] == "7200000"
    (partition,) = described["partition_offsets"]
    assert (partition["id"], partition["committed"], partition["end"], partition["lag"]) == (0, 2, 5, 3)
    code, text = run("topics", "describe", "emails", "--url", url)
    assert code == 0, text
    assert "1 partition, replication factor" in text and "retention.ms=7200000" in text
    assert "COMMITTED" in text and "LAG" in text


def test_create_and_alter_the_queue_topics(kafka_url: Callable[..., str]) -> None:
    url = kafka_url(partitions=2)
    code, text = run(
        "topics", "create", "audit", "--url", url, "--partitions", "3", "--config", "retention.ms=60000"
    )
    assert code == 0, text
    assert text.endswith("-audit created 3 partitions\n"), text
    code, text = run("topics", "create", "audit", "plain", "--url", url)
    assert code == 0, text
    assert "-audit already exists: 3 partitions" in text and "-plain created 2 partitions" in text
    code, text = run("topics", "alter", "audit", "--url", url, "--config", "retention.ms=120000")
    assert code == 0, text
    (audit,) = as_json("topics", "describe", "audit", "--url", url)
    assert (audit["partitions"], audit["configs"]["retention.ms"]) == (3, "120000")
    code, text = run("topics", "alter", "audit", "--url", url, "--partitions", "2")
    assert code == 2
    assert "has 3 partitions; Kafka cannot remove partitions, so it cannot have 2" in text
    code, text = run("topics", "alter", "audit", "--url", url, "--config", "cleanup.policy=compact")
    assert code == 2 and "queue topics must use cleanup.policy=delete" in text
    code, text = run("topics", "alter", "audit", "--url", url, "--config", "retention.ms")
    assert code == 2 and "expected NAME=VALUE" in text
    code, text = run("topics", "alter", "missing", "--url", url, "--config", "retention.ms=1")
    assert code == 2 and "queue 'missing' has no topic" in text
    code, text = run("topics", "alter", "audit", "--url", url)
    assert code == 2 and "nothing to alter" in text
    code, text = run("topics", "create", "other", "--url", url, "--replication-factor", "0")
    assert code == 2 and "--replication-factor must be at least 1, or -1" in text


def test_alter_partitions_grows_the_topic_or_names_the_broker_that_cannot(
    kafka_url: Callable[..., str],
) -> None:
    url = kafka_url()
    assert run("topics", "create", "grow", "--url", url)[0] == 0
    code, text = run("topics", "alter", "grow", "--url", url, "--partitions", "3")
    if ON_TANSU:  # Tansu does not implement CreatePartitions: a clear error, status 2
        assert code == 2
        assert "does not support CreatePartitions of" in text and "(from 1 to 3 partitions)" in text
        return
    assert code == 0, text
    assert "1 -> 3 partitions" in text
    (grown,) = as_json("topics", "describe", "grow", "--url", url)
    assert grown["partitions"] == 3


def test_copy_offsets_starts_a_renamed_group_where_the_old_one_stopped(
    make_driver: Callable[..., KafkaDriver], kafka_url: Callable[..., str]
) -> None:
    old = f"old{time.monotonic_ns()}"
    finish_two_of_five(make_driver, group_id=old)
    new_url = kafka_url()  # the test's own group_id: a renamed application
    code, text = run("groups", "copy-offsets", old, "--url", new_url)
    assert code == 0, text
    assert f"now starts where {old}.emails stopped" in text and "(partition 0: 2)" in text
    renamed = make_driver()
    got = reserve_until(renamed, ["emails"], 3)
    assert [d.message.payload for d in got] == [2, 3, 4]
    for delivery in got:
        renamed.ack(delivery)
    assert renamed.reserve(["emails"], limit=5, timeout=1.0) == []  # nothing replayed
    renamed.close()
    code, text = run("groups", "copy-offsets", old, "--url", new_url)
    assert code == 2
    assert "already committed offsets" in text and "pass --force" in text


def test_a_new_group_on_a_topic_another_group_consumed_is_warned_about(
    make_driver: Callable[..., KafkaDriver], caplog: pytest.LogCaptureFixture
) -> None:
    old = f"old{time.monotonic_ns()}"
    finish_two_of_five(make_driver, group_id=old)
    with caplog.at_level(logging.WARNING, logger="jobs_kafka.groups"):
        renamed = make_driver()
        got = reserve_until(renamed, ["emails"], 5)
        deadline = time.monotonic() + 20
        while not group_warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [d.message.payload for d in got] == [0, 1, 2, 3, 4]  # what a renamed group does: all again
    (warning,) = group_warnings(caplog)
    group = f"{renamed.settings.group_id}.emails"
    assert f"kafka consumer group {group} has no committed offsets on topic" in warning
    assert f"{old}.emails at partition 0: 2" in warning
    assert f"jobs kafka groups copy-offsets {old} --queue emails" in warning


def group_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings about consumer groups logged so far."""
    return [r.getMessage() for r in caplog.records if r.name == "jobs_kafka.groups"]


def test_a_group_that_committed_before_is_not_warned_about(
    make_driver: Callable[..., KafkaDriver], caplog: pytest.LogCaptureFixture
) -> None:
    finish_two_of_five(make_driver, group_id=f"old{time.monotonic_ns()}")
    with caplog.at_level(logging.WARNING, logger="jobs_kafka.groups"):
        first = make_driver()  # a new group: warned about, then commits
        (delivery,) = reserve_until(first, ["emails"], 1)
        first.ack(delivery)
        first.close()
        deadline = time.monotonic() + 20
        while not group_warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group_warnings(caplog)) == 1
        caplog.clear()
        again = make_driver()  # the same group, restarted: it has offsets of its own
        assert [d.message.payload for d in reserve_until(again, ["emails"], 4)] == [1, 2, 3, 4]
        time.sleep(1.0)  # the check runs in the background
    assert group_warnings(caplog) == []


DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "drivers" / "kafka.md"


def docs_section() -> str:
    """The queue-topics section of docs/drivers/kafka.md."""
    text = DOCS.read_text()
    start = text.index("## Queue topics: settings")
    return text[start : text.index("\n## ", start + 1)]


def test_the_docs_url_example_parses_to_the_settings_it_describes() -> None:
    (block,) = re.findall(r"^```\n(kafka://.*?)^```", docs_section(), flags=re.S | re.M)
    settings = KafkaSettings.parse("".join(block.split()), {})
    assert settings.topic_spec("emails") == TopicSpec(
        24, 3, {"retention.ms": "86400000", "min.insync.replicas": "2"}
    )
    assert settings.topic_spec("other") == TopicSpec(
        6, 3, {"retention.ms": "604800000", "min.insync.replicas": "2"}
    )


def test_the_docs_console_examples_run_as_written(kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, app, again = f"d{tag}-", f"app{tag}", f"new{tag}"
    fast = "&" + urlencode(FAST_TEST_SETTINGS) if ON_TANSU else ""

    def url(group: str) -> str:
        return f"kafka://{kafka_bootstrap}?group_id={group}&topic_prefix={prefix}&timeout=10{fast}"

    # The state the examples show: group app finished 2 of 5 jobs of emails
    # (a topic created with retention.ms=5000), and queue later holds a delayed job.
    setup = KafkaDriver(url(app) + "&topic_config.retention.ms=5000")
    setup.enqueue(jobs("emails", 5))
    setup.enqueue(jobs("later", 1, available_at=time.time() + 600))
    done = reserve_until(setup, ["emails"], 2)
    for delivery in done:
        setup.ack(delivery)
    setup.close()
    topics_block, groups_block = re.findall(r"^```console\n(.*?)^```", docs_section(), flags=re.S | re.M)
    # The groups example renames app to a new group_id: "old-app" is app, "app" the new one.
    for block, old, new in ((topics_block, "old-app", app), (groups_block, app, again)):
        commands = re.split(r"^\$ ", block, flags=re.M)[1:]
        for command in commands:
            line, _, sample = command.partition("\n")
            words = shlex.split(line.replace("...", f'"{url(new)}"'))
            words = [url(new) if w == "kafka://broker:9092?group_id=app" else w for w in words]
            words = [old if w == "old-app" else w for w in words]
            assert words[:2] == ["jobs", "kafka"], line
            result = CliRunner().invoke(cli, words[1:])
            expected = sample.replace("old-app.", "\0.").replace("app.", f"{new}.").replace("\0.", f"{old}.")
            expected = expected.replace("jobs-", prefix)
            if expected.startswith("jobs: error:"):
                assert result.exit_code == 2, (line, result.output)
                assert " ".join(expected.split()) in " ".join(result.output.split()), (line, result.output)
                continue
            assert result.exit_code == 0, (line, result.output)
            shown = [" ".join(row.split()) for row in result.output.splitlines()]
            for row in expected.strip().splitlines():
                normal = " ".join(row.split())
                # The samples' tables are the test broker's (replicas, leader 111, configs shown).
                if ON_TANSU or normal.startswith("topic ") or " now starts where " in normal:
                    assert normal in shown, (line, normal, result.output)
