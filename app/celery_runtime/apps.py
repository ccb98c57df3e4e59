from django.apps import AppConfig


class CeleryRuntimeConfig(AppConfig):
    """The worker's runtime as a Django app for its `manage.py dead_letters` command; it has no models."""

    name = "celery_runtime"
    verbose_name = "Celery runtime"
