"""Connection URLs: schemes, and passwords kept out of output."""

from __future__ import annotations

import pytest
from jobs_core.errors import InvalidURL
from jobs_core.urls import (
    base_scheme,
    is_secret_key,
    query_options,
    redact_text,
    redact_url,
    split_credentials,
    url_scheme,
)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("memory://", "memory"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
        ("SQLite:///jobs.db", "sqlite"),
        ("kafka://b1:9092,b2:9092?group_id=g", "kafka"),
    ],
)
def test_url_scheme(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


@pytest.mark.parametrize("url", ["", "jobs.db", "://x", "1abc://x"])
def test_a_url_without_a_scheme_is_refused_with_examples(url: str) -> None:
    with pytest.raises(InvalidURL, match="expected 'scheme://"):
        url_scheme(url)


def test_a_url_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidURL, match="must be a string"):
        url_scheme(None)  # type: ignore[arg-type]


def test_base_scheme_drops_the_dialect() -> None:
    assert base_scheme("postgresql+psycopg") == "postgresql"
    assert base_scheme("memory") == "memory"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@db:5432/app", "postgresql://alice:***@db:5432/app"),
        ("mysql+pymysql://root:p%40ss@h/test", "mysql+pymysql://root:***@h/test"),
        ("memory://", "memory://"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_query_options() -> None:
    assert query_options("kafka://h:1?group_id=g&compression=zstd") == {
        "group_id": "g",
        "compression": "zstd",
    }


#: A password with every character that breaks URL parsers, around distinct words.
SPECIAL = "one@two/three?four#five:six"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SPECIAL}@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("postgresql://app:one/two@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:one#two@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:one?two@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:one@two@db/jobs", "postgresql://app:***@db/jobs"),
        (f"kafka://app:{SPECIAL}@b1:9092,b2:9092?group_id=g", "kafka://app:***@b1:9092,b2:9092?group_id=g"),
        (f"app:{SPECIAL}@db/jobs", "app:***@db/jobs"),
        (f"postgresql:/app:{SPECIAL}@db/jobs", "postgresql:***@db/jobs"),
    ],
)
def test_redact_url_hides_a_password_with_unencoded_special_characters(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for word in ("one", "two", "three", "four", "five", "six"):
        assert word not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://db/jobs?password=hunter2&sslmode=require",
            "postgresql://db/jobs?password=***&sslmode=require",
        ),
        ("kafka://h:9092?sasl.password=hunter2", "kafka://h:9092?sasl.password=***"),
        ("kafka://h:9092?group_id=g&SASL.PASSWORD=hunter2", "kafka://h:9092?group_id=g&SASL.PASSWORD=***"),
        (
            "kafka://h:9092?sasl.oauthbearer.client.secret=hunter2",
            "kafka://h:9092?sasl.oauthbearer.client.secret=***",
        ),
        (
            "kafka://h:9092?ssl.key.password=a&ssl.keystore.password=b",
            "kafka://h:9092?ssl.key.password=***&ssl.keystore.password=***",
        ),
        (
            "x://h?token=hunter2&api_key=k&pwd=p&passwd=q&key=z",
            "x://h?token=***&api_key=***&pwd=***&passwd=***&key=***",
        ),
        ("postgresql://db/jobs?password=hun#ter?2&x=1", "postgresql://db/jobs?password=***&x=1"),
        ("postgresql://db/jobs?sasl%2Epassword=hunter2", "postgresql://db/jobs?sasl%2Epassword=***"),
        ("postgresql://u:pw@db/jobs?password=hunter2", "postgresql://u:***@db/jobs?password=***"),
    ],
)
def test_redact_url_hides_secret_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db:5432/jobs?sslmode=require",
        "kafka://b1:9092,b2:9092?group_id=g&sasl.username=app&sasl.mechanism=PLAIN",
        "sqlite:////home/me@work/jobs.db",
        "kafka://[::1]:9092",
    ],
)
def test_redact_url_leaves_urls_without_secrets_alone(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "PASSWORD",
        "passwd",
        "pwd",
        "secret",
        "token",
        "key",
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "sslpassword",
        "access_token",
        "api_key",
    ],
)
def test_secret_keys(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["sasl.username", "group_id", "sslmode", "table_prefix", "session.timeout.ms"]
)
def test_keys_that_are_not_secret(name: str) -> None:
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    ("url", "user", "password", "rest"),
    [
        ("kafka://app:s3cret@h:9092", "app", "s3cret", "kafka://h:9092"),
        ("kafka://app:p%40ss@h:9092", "app", "p%40ss", "kafka://h:9092"),
        (f"kafka://app:{SPECIAL}@h:9092?group_id=g", "app", SPECIAL, "kafka://h:9092?group_id=g"),
        (
            "kafka://app:a/b?c@h:9092?sasl.username=me@example.com",
            "app",
            "a/b?c",
            "kafka://h:9092?sasl.username=me@example.com",
        ),
        ("postgresql://app@db/jobs", "app", None, "postgresql://db/jobs"),
    ],
)
def test_split_credentials(url: str, user: str, password: str | None, rest: str) -> None:
    assert split_credentials(url) == (user, password, rest)


@pytest.mark.parametrize(
    "url", ["kafka://h:9092?sasl.username=me@example.com", "sqlite:////home/me@work/jobs.db", "memory://"]
)
def test_an_at_sign_after_a_plain_host_is_not_userinfo(url: str) -> None:
    assert split_credentials(url) is None


def test_redact_text_hides_the_url_and_each_secret_in_any_text() -> None:
    url = f"postgresql://app:{SPECIAL}@db/jobs?password=hunter2"
    text = f"could not parse {url!r}; host {SPECIAL}; auth hunter2; user app"
    shown = redact_text(text, url)
    assert SPECIAL not in shown and "hunter2" not in shown
    assert "postgresql://app:***@db/jobs?password=***" in shown
    assert shown.endswith("user app")
    assert redact_text("password s3cret", secrets=["s3cret"]) == "password ***"
