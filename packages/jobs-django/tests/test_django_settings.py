"""Settings, the Jobs facade configured from them, jobs.py autodiscovery and jobs_django.connection()."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from conftest import run_worker
from django.db import transaction
from django.test import override_settings
from jobs_core import Jobs
from jobs_django import DjangoConfigurationError, conf, connection
from shop.jobs import stamp
from shop.models import Order


def test_the_jobs_url_comes_from_the_django_database_with_its_options() -> None:
    settings = conf.load({"DRIVER_OPTIONS": {"table_prefix": "djangotest_"}})
    assert settings.database == "default" and settings.transactional
    kind = os.environ.get("JOBS_DJANGO_TEST_DATABASE", "sqlite")
    scheme = {"sqlite": "sqlite:////", "postgresql": "postgresql+psycopg://", "mariadb": "mysql+pymysql://"}
    assert settings.url.startswith(scheme[kind])
    from django.conf import settings as django_settings

    assert settings.url.endswith("/" + django_settings.DATABASES["default"]["NAME"].lstrip("/"))
    assert Jobs.app().config.url == settings.url  # the facade, configured by the app's ready()
    assert Jobs.app().config.options == {"table_prefix": "djangotest_"}


def test_a_url_of_its_own_is_not_transactional_unless_a_database_is_named() -> None:
    own = conf.load({"URL": "sqlite:////tmp/elsewhere.db"})
    assert own.url == "sqlite:////tmp/elsewhere.db" and not own.transactional and own.database is None
    named = conf.load({"URL": "sqlite:////tmp/elsewhere.db", "DATABASE": "default"})
    assert named.transactional


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"URLS": "x"}, "unknown key"),
        ({"MAX_RETRIES": -1}, "MAX_RETRIES"),
        ({"TIMEOUT": 0}, "TIMEOUT"),
        ({"DATABASE": "nope"}, "'nope' is not in DATABASES"),
        ({"URL": "sqlite:////tmp/x.db", "TRANSACTIONAL": True}, "TRANSACTIONAL needs DATABASE"),
        ({"TRANSACTIONAL": "yes"}, "TRANSACTIONAL must be True or False"),
        ({"DRIVER_OPTIONS": ["table_prefix"]}, "DRIVER_OPTIONS must be a dict"),
    ],
)
def test_bad_settings_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(DjangoConfigurationError, match=message):
        conf.load(options, where="TASKS['default']['OPTIONS']")


def test_the_jobs_setting_is_read_and_an_in_memory_database_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings as django_settings

    with override_settings(JOBS={"URL": "sqlite:////tmp/from-jobs.db", "MAX_RETRIES": 2}):
        settings = conf.load({"TIMEOUT": 30})
        assert (settings.url, settings.max_retries, settings.timeout) == (
            "sqlite:////tmp/from-jobs.db",
            2,
            30,
        )
    memory = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    monkeypatch.setitem(django_settings.DATABASES, "memory", memory)
    with pytest.raises(DjangoConfigurationError, match="in-memory"):
        conf.database_url("memory")
    oracle = {"ENGINE": "django.db.backends.oracle", "NAME": "shop"}
    monkeypatch.setitem(django_settings.DATABASES, "oracle", oracle)
    with pytest.raises(DjangoConfigurationError, match="give URL"):
        conf.database_url("oracle")


def test_a_mysql_database_gives_a_pymysql_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings as django_settings

    mysql = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": "p@ss/word",
        "HOST": "db.internal",
        "PORT": "3307",
    }
    monkeypatch.setitem(django_settings.DATABASES, "mysql", mysql)
    assert conf.database_url("mysql") == "mysql+pymysql://app:p%40ss%2Fword@db.internal:3307/shop"
    socket = {"ENGINE": "django.db.backends.mysql", "NAME": "shop", "USER": "app", "HOST": "/run/mysqld.sock"}
    monkeypatch.setitem(django_settings.DATABASES, "mysql", socket)
    assert conf.database_url("mysql") == "mysql+pymysql://app@/shop?unix_socket=/run/mysqld.sock"
    option_file = {"ENGINE": "django.db.backends.mysql", "OPTIONS": {"read_default_file": "/etc/my.cnf"}}
    monkeypatch.setitem(django_settings.DATABASES, "mysql", option_file)
    with pytest.raises(DjangoConfigurationError, match=r"option file.*give URL"):
        conf.database_url("mysql")


def test_jobs_of_an_apps_jobs_py_run_and_enqueue_in_the_django_transaction(project: pathlib.Path) -> None:
    Order.objects.filter(label__startswith="j-").delete()
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(label="j-rolled-back")
        with connection() as conn:
            Jobs.dispatch(stamp, {"label": "j-never"}, transaction=conn)
        raise RuntimeError("rolled back")
    with transaction.atomic(), connection() as conn:
        job_id = Jobs.dispatch(stamp, {"label": "j-stamped"}, transaction=conn)
    assert job_id is not None

    run_worker("--queue", "emails")  # finds shop/jobs.py by autodiscovery

    labels = set(Order.objects.filter(label__startswith="j-").values_list("label", flat=True))
    assert labels == {"j-stamped"}
    assert Jobs.status(job_id).state == "succeeded"


def test_djangos_test_runner_uses_the_test_database(project: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "test", "shop", "--noinput", "-v", "1"],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k != "JOBS_URL"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Ran 1 test" in done.stderr and "OK" in done.stderr
