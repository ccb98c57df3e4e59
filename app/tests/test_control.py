"""The worker's `conf` remote control command (celery_runtime.control): what Flower's Config tab shows."""

from types import SimpleNamespace

from celery.worker.control import Panel

from celery_runtime.control import conf


def test_conf_shows_every_url_without_its_password() -> None:
    table = {
        "CELERY_BROKER_URL": "redis://:s3cret@redis:6379/0",
        "CELERY_RESULT_BACKEND": "db+postgresql://app:s3cret@postgres/app",
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"sentinels": ["sentinel://:s3cret@sentinel:26379"]},
        "PLAIN": "redis://redis:6379/0",
        "NUMBER": 7,
    }
    state = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(table=lambda with_defaults=False: table)))
    answer = conf(state)
    assert "s3cret" not in repr(answer)
    assert answer["CELERY_BROKER_URL"] == "redis://:**@redis:6379/0"
    assert answer["PLAIN"] == "redis://redis:6379/0"
    assert answer["NUMBER"] == 7


def test_the_worker_answers_conf_with_this_command() -> None:
    import config.celery_app  # noqa: F401  # installs the runtime, as the worker does

    assert Panel.data["conf"] is conf
