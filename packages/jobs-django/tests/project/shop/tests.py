"""The project's own tests, run by Django's test runner (``python manage.py test shop``).

Django creates a test database once the tasks are defined; the backend and
the ``Jobs`` facade follow it (a TransactionTestCase: a job enqueued in the
test is committed, so the worker, on its own connection, sees it).
"""

from django.conf import settings
from django.db import connection
from django.test import TransactionTestCase
from jobs_core import Jobs
from jobs_django import compat

from shop.tasks import add


class TasksInTheTestDatabase(TransactionTestCase):
    def test_a_task_runs_in_the_test_database(self) -> None:
        backend = compat.tasks.default_task_backend
        name = connection.settings_dict["NAME"]
        self.assertEqual(settings.DATABASES["default"]["NAME"], name)
        self.assertIn(str(name).rsplit("/", 1)[-1], backend.app.config.url)
        self.assertEqual(Jobs.app().config.url, backend.app.config.url)

        result = add.enqueue(2, 3)
        self.assertEqual(backend.app.work("default"), 1)
        result.refresh()
        self.assertEqual(result.return_value, 5)
