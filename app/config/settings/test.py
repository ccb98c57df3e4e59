"""Tests: pytest-django, and the worker that executes the integration tests' tasks (compose profile test)."""

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

# pytest and the test worker share one database, separate from the development one: the integration
# tests commit rows the worker must see, and flush them afterwards.
_test_database = f"{DATABASES['default']['NAME']}_test"
DATABASES["default"]["NAME"] = _test_database
DATABASES["default"]["TEST"] = {"NAME": _test_database}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; test users only
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
WHITENOISE_AUTOREFRESH = True  # no collectstatic in tests
# Tasks that a unit test runs eagerly store their results, so /tasks/<id>/ reads them back as it would a worker's.
CELERY_TASK_STORE_EAGER_RESULT = True
# The worker tests send django.tasks tasks to queues of their own (any name).
TASKS = {"default": {**TASKS["default"], "QUEUES": []}}  # noqa: F405
