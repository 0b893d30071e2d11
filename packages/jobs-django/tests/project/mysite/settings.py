"""Settings of the test project: SQLite, PostgreSQL or MariaDB, chosen by JOBS_DJANGO_TEST_DATABASE.

``JOBS_DJANGO_TEST_DATABASE`` is ``sqlite`` (the default; the file is
``JOBS_DJANGO_TEST_SQLITE``), ``postgresql`` (``JOBS_TEST_POSTGRESQL_URL``,
else the local ``test`` database) or ``mariadb`` (``JOBS_TEST_MARIADB_URL``,
else the local ``test`` database; Django's MySQL backend, mysqlclient).
"""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "test-project-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "jobs_django",
    "shop",
]
try:  # Django < 6: the backport
    import django_tasks  # noqa: F401

    INSTALLED_APPS.append("django_tasks")
except ImportError:
    pass

_kind = os.environ.get("JOBS_DJANGO_TEST_DATABASE", "sqlite")
_SERVERS = {  # kind: (Django engine, variable with the URL, default URL)
    "postgresql": (
        "django.db.backends.postgresql",
        "JOBS_TEST_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": (
        "django.db.backends.mysql",
        "JOBS_TEST_MARIADB_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
    ),
}
if _kind in _SERVERS:
    _engine, _variable, _default = _SERVERS[_kind]
    _url = urlsplit(os.environ.get(_variable, _default))
    DATABASES = {
        "default": {
            "ENGINE": _engine,
            "NAME": _url.path.lstrip("/"),
            "USER": unquote(_url.username or ""),
            "PASSWORD": unquote(_url.password or ""),
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
        }
    }
else:
    _file = os.environ.get("JOBS_DJANGO_TEST_SQLITE", os.path.join(os.path.dirname(__file__), "db.sqlite3"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _file,
            # Django's test runner: a file, not its in-memory default, so that a worker can see it.
            "TEST": {"NAME": _file + ".test"},
            # A task's atomic() block takes the write lock at BEGIN, so that it waits for the
            # worker's own writes rather than failing with "database is locked" on its first write.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    }

TEST_RUNNER = "jobs_django.testing.DiscoverRunner"

# The jobs tables live in the default database (no URL: derived from it), with
# their own prefix, so that the project's tests share a server with others.
TASKS = {
    "default": {
        "BACKEND": "jobs_django.JobsBackend",
        "QUEUES": ["default", "emails", "special"],
        "OPTIONS": {"DRIVER_OPTIONS": {"table_prefix": "djangotest_"}},
    },
    # The same jobs tables, with a retry for a task that raised.
    "retrying": {
        "BACKEND": "jobs_django.JobsBackend",
        "OPTIONS": {"DRIVER_OPTIONS": {"table_prefix": "djangotest_"}, "MAX_RETRIES": 1},
    },
}
