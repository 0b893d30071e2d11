from __future__ import annotations

from pathlib import Path

import pytest
from jobs_core.errors import ConfigurationError, InvalidName, InvalidURL
from jobs_database import DatabaseDriver, DatabaseSettings, validate_prefix
from jobs_database.settings import DEFAULT_PREFIX


@pytest.mark.parametrize(
    ("url", "backend", "drivername"),
    [
        ("sqlite:///jobs.db", "sqlite", "sqlite+pysqlite"),
        ("sqlite:///:memory:", "sqlite", "sqlite+pysqlite"),
        ("postgresql://u@h/db", "postgresql", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql", "mysql+pymysql"),
        ("mysql+pymysql://u@h/db", "mysql", "mysql+pymysql"),
        ("mariadb://u@h/db", "mysql", "mysql+pymysql"),
    ],
)
def test_url_forms_are_normalised_to_the_supported_dbapi(url: str, backend: str, drivername: str) -> None:
    settings = DatabaseSettings.parse(url)
    assert settings.backend == backend
    assert settings.url.drivername == drivername
    assert settings.table_prefix == DEFAULT_PREFIX


def test_jobs_settings_are_stripped_from_the_query_string_and_others_kept() -> None:
    settings = DatabaseSettings.parse(
        "postgresql://u@h/db?table_prefix=myapp_&poll_interval=0.5&sslmode=require&pool_size=3"
    )
    assert settings.table_prefix == "myapp_"
    assert settings.poll_interval == 0.5
    assert settings.pool_size == 3
    assert dict(settings.url.query) == {"sslmode": "require"}


def test_dict_form_with_connection_and_options_wins_over_the_query() -> None:
    settings = DatabaseSettings.parse(
        None, {"connection": "sqlite:///x.db?table_prefix=a_", "table_prefix": "b_", "driver": "database"}
    )
    assert settings.table_prefix == "b_"


@pytest.mark.parametrize("prefix", ["jobs_", "myapp_jobs_", "a", ""])
def test_safe_prefixes_are_accepted(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    ["jobs; drop table x; --", "Jobs_", "1jobs", "jobs-", "a" * 31, 'x"y', None, "jobs_\n", "\njobs_"],
)
def test_unsafe_prefixes_are_refused_with_a_clear_error(prefix: object) -> None:
    with pytest.raises(InvalidName, match="invalid table prefix"):
        validate_prefix(prefix)
    with pytest.raises(InvalidName):
        DatabaseSettings.parse("sqlite:///x.db", {"table_prefix": prefix})


def test_a_prefix_with_a_trailing_newline_in_the_url_is_refused_before_any_sql(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    with pytest.raises(InvalidName, match=r"invalid table prefix 'jobs_\\n'"):
        DatabaseDriver(f"sqlite:///{database}?table_prefix=jobs_%0A")
    assert not database.exists()


def test_unsupported_scheme_and_missing_database_are_refused() -> None:
    with pytest.raises(InvalidURL, match="unsupported database URL scheme"):
        DatabaseSettings.parse("oracle://u@h/db")
    with pytest.raises(InvalidURL, match="names no database"):
        DatabaseSettings.parse("postgresql://u@h")
    with pytest.raises(ConfigurationError, match="needs a connection URL"):
        DatabaseSettings.parse(None, {})


def test_unknown_and_bad_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown database driver setting 'poll'"):
        DatabaseSettings.parse("sqlite:///x.db", {"poll": 1})
    with pytest.raises(ConfigurationError, match="'poll_interval' must be a number"):
        DatabaseSettings.parse("sqlite:///x.db?poll_interval=soon")
    with pytest.raises(ConfigurationError, match="'pool_size' must be at least 1"):
        DatabaseSettings.parse("sqlite:///x.db?pool_size=0")


def test_password_never_appears_in_repr_or_display() -> None:
    driver = DatabaseDriver("postgresql://app:s3cret-pw@127.0.0.1:1/db")
    try:
        assert "s3cret-pw" not in repr(driver)
        assert "s3cret-pw" not in driver.settings.display
        assert driver.settings.location == "127.0.0.1:1"
    finally:
        driver.close()


def test_memory_sqlite_works_in_one_process_without_transactional_enqueue() -> None:
    from jobs_core import Capability, Message

    driver = DatabaseDriver("sqlite:///:memory:")
    try:
        assert Capability.TRANSACTIONAL_ENQUEUE not in driver.capabilities
        ids = driver.enqueue([Message(name="n", queue="q")])
        [delivery] = driver.reserve(["q"])
        assert delivery.id == ids[0]
        driver.ack(delivery)
        assert driver.stats("q").completed == 1
    finally:
        driver.close()


def test_a_password_with_unencoded_special_characters_is_read_whole_and_never_shown() -> None:
    password = "one@two/three?four#five:six"
    settings = DatabaseSettings.parse(
        f"postgresql://app:{password}@db:5432/jobs?password=seven&sslmode=require"
    )
    assert (settings.url.password, settings.url.host, settings.url.port) == (password, "db", 5432)
    assert settings.url.database == "jobs"
    shown = f"{settings.display} {settings!r} {settings.location}"
    for word in ("one", "two", "three", "four", "five", "six", "seven"):
        assert word not in shown
    assert "sslmode=require" in settings.display


def test_sqlalchemy_errors_about_a_url_do_not_quote_its_password() -> None:
    with pytest.raises(InvalidURL) as caught:
        DatabaseDriver("sqlite://app:hunter2@/jobs.db")
    assert "hunter2" not in str(caught.value)
    assert "sqlite+pysqlite://app:***@" in str(caught.value)
