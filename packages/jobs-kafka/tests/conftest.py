"""Fixtures: one Kafka-protocol broker per session, fresh topics and groups per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest
from jobs_core.errors import ConfigurationError
from jobs_kafka import KafkaDriver
from jobs_kafka.testing.broker import ENV_BOOTSTRAP, FAST_TEST_SETTINGS, TansuBroker

#: True when the tests run against Tansu (its known defects apply).
ON_TANSU = not os.environ.get(ENV_BOOTSTRAP)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker | None]:
    """The Tansu broker of this session, or ``None`` when a real cluster is named."""
    if os.environ.get(ENV_BOOTSTRAP):
        yield None
        return
    try:
        broker = TansuBroker.start()
    except ConfigurationError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Kafka-protocol broker: {exc}")
    with broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TansuBroker | None) -> str:
    """``host:port`` of the brokers under test."""
    return kafka_broker.bootstrap if kafka_broker is not None else os.environ[ENV_BOOTSTRAP]


@pytest.fixture
def kafka_url(kafka_bootstrap: str) -> Callable[..., str]:
    """Build a driver URL with a fresh topic prefix and group for this test (shared by its drivers)."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    group = f"g{uuid.uuid4().hex[:10]}"

    def make(**params: object) -> str:
        query: dict[str, object] = {"topic_prefix": prefix, "group_id": group, "timeout": 10}
        if ON_TANSU:
            query.update(FAST_TEST_SETTINGS)
        query.update(params)
        return f"kafka://{kafka_bootstrap}?{urlencode(query)}"

    return make


@pytest.fixture
def make_driver(kafka_url: Callable[..., str]) -> Iterator[Callable[..., KafkaDriver]]:
    """Build drivers on this test's topics; all are closed after the test."""
    built: list[KafkaDriver] = []

    def make(**params: object) -> KafkaDriver:
        driver = KafkaDriver(kafka_url(**params))
        built.append(driver)
        return driver

    yield make
    for driver in built:
        driver.close()


@pytest.fixture
def driver(make_driver: Callable[..., KafkaDriver]) -> KafkaDriver:
    """A driver on fresh topics."""
    return make_driver()
