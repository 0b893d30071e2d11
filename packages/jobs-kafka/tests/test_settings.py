from __future__ import annotations

import pytest
from jobs_core.config import JobsConfig
from jobs_core.errors import ConfigurationError, InvalidName, InvalidURL
from jobs_core.plugins import DriverRegistry
from jobs_kafka import KafkaDriver, KafkaSettings
from jobs_kafka.topics import TopicNames, check_queue


def test_url_form_with_driver_and_librdkafka_settings() -> None:
    settings = KafkaSettings.parse(
        "kafka://a:9092,b:9093?group_id=app&topic_prefix=x.&compression=zstd&partitions=6"
        "&replication_factor=3&session.timeout.ms=10000&delay_tiers=2,10",
        {},
    )
    assert settings.brokers == ("a:9092", "b:9093")
    assert settings.group_id == "app"
    assert settings.topic_prefix == "x."
    assert settings.compression == "zstd"
    assert (settings.partitions, settings.replication_factor) == (6, 3)
    assert settings.delay_tiers == (2.0, 10.0)
    consumer = settings.consumer_config("app")
    assert consumer["session.timeout.ms"] == "10000"
    assert consumer["enable.auto.commit"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert "group.instance.id" not in consumer
    producer = settings.producer_config()
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["compression.type"] == "zstd"
    assert "session.timeout.ms" not in producer


def test_dict_form_with_config_mapping() -> None:
    settings = KafkaSettings.parse(
        None,
        {
            "brokers": ["h1:9092", "h2:9092"],
            "group_id": "g",
            "compression": "gzip",
            "config": {"security.protocol": "SASL_SSL", "sasl.password": "hunter2"},
        },
    )
    assert settings.bootstrap == "h1:9092,h2:9092"
    assert settings.producer_config()["security.protocol"] == "SASL_SSL"
    assert settings.redacted_config()["sasl.password"] == "***"


def test_the_dict_form_resolves_through_the_entry_point() -> None:
    config = JobsConfig.parse({"driver": "kafka", "brokers": "127.0.0.1:1", "group_id": "g"})
    assert config.driver_class(DriverRegistry()) is KafkaDriver
    assert DriverRegistry().get("kafka") is KafkaDriver


def test_url_credentials_become_sasl_settings() -> None:
    settings = KafkaSettings.parse("kafka://app:s%40cret@h:9092?security.protocol=SASL_SSL", {})
    assert settings.config["sasl.username"] == "app"
    assert settings.config["sasl.password"] == "s@cret"
    assert settings.brokers == ("h:9092",)
    assert "s@cret" not in repr(settings.redacted_config())


def test_password_never_in_repr() -> None:
    driver = KafkaDriver("kafka://user:hunter2@127.0.0.1:1?sasl.password=hunter2")
    try:
        assert "hunter2" not in repr(driver)
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("kafka://h:9092?colour=red", ConfigurationError, "unknown kafka setting 'colour'"),
        ("kafka://h:9092?compression=brotli", ConfigurationError, "compression must be one of"),
        ("kafka://h:9092?partitions=0", ConfigurationError, "partitions must be at least 1"),
        ("kafka://h:9092?topic_prefix=bad/prefix", InvalidName, "topic_prefix"),
        ("kafka://h:9092?enable.auto.commit=true", ConfigurationError, "managed by the kafka driver"),
        ("kafka://h?group_id=a", InvalidURL, "expected host:port"),
        ("kafka://", ConfigurationError, "needs brokers"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(url: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        KafkaSettings.parse(url, {})


def test_queue_names_may_not_collide_with_internal_topics() -> None:
    assert check_queue("emails.high") == "emails.high"
    with pytest.raises(InvalidName, match="reserved"):
        check_queue("a__dead")


def test_tiers_pick_the_largest_not_exceeding_the_remaining_delay() -> None:
    names = TopicNames(KafkaSettings.parse("kafka://h:1?delay_tiers=1,5,30", {}))
    assert names.tier_for(0.2) == 1.0
    assert names.tier_for(4.9) == 1.0
    assert names.tier_for(5.0) == 5.0
    assert names.tier_for(1000) == 30.0
    assert names.tier_topics("mail")[5.0] == "jobs-mail__delay-5s"
    assert names.tier_of("jobs-mail__delay-5s") == 5.0
    assert names.tier_of("jobs-mail") is None
    assert names.queue_of("jobs-mail__delay-5s") is None
    assert names.queue_of("jobs-emails") == "emails"
    assert names.queue_of("jobs-__dead") is None


def test_a_sasl_password_with_unencoded_special_characters_is_read_whole() -> None:
    password = "one@two/three?four#five:six"
    settings = KafkaSettings.parse(f"kafka://app:{password}@h1:9092,h2:9092?group_id=g", {})
    assert settings.brokers == ("h1:9092", "h2:9092")
    assert settings.config["sasl.password"] == password
    assert settings.group_id == "g"
    assert password not in repr(settings)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("kafka://app:hunter2/x@h", {}),
        ("kafka://app:hunter2#x@h:1?colour=red", {}),
        (None, {"brokers": "app:hunter2@h:1x"}),
        (None, {"brokers": "h:1", "config": {"sasl.password": "hunter2"}, "group_id": "bad group hunter2"}),
    ],
)
def test_kafka_setting_errors_never_quote_a_password(url: str | None, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KafkaSettings.parse(url, options)
    assert "hunter" not in str(caught.value)
