"""Connection URLs: schemes, and passwords kept out of output."""

from __future__ import annotations

import pytest
from jobs_core.errors import InvalidURL
from jobs_core.urls import base_scheme, query_options, redact_url, url_scheme


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
