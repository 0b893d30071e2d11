"""Settings of the test project: SQLite or PostgreSQL, chosen by JOBS_DJANGO_TEST_DATABASE.

``JOBS_DJANGO_TEST_DATABASE`` is ``sqlite`` (the default; the file is
``JOBS_DJANGO_TEST_SQLITE``) or ``postgresql`` (``JOBS_TEST_POSTGRESQL_URL``,
else the local ``test`` database).
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
if _kind == "postgresql":
    _url = urlsplit(
        os.environ.get("JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
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
