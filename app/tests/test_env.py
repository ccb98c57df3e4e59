from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import StrictEnv, celery_settings_from_env, env, reject_unknown_django_variables


def test_celery_settings_are_typed_by_celerys_option_table() -> None:
    settings = celery_settings_from_env(
        {
            "CELERY_WORKER_CONCURRENCY": "7",
            "CELERY_TASK_ACKS_LATE": "true",
            "CELERY_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 3600}',
            "CELERY_TASK_TIME_LIMIT": "90.5",
            "CELERY_WORKER_PREFETCH_MULTIPLIER": "2",
            "CELERY_ACCEPT_CONTENT": "json,msgpack",
            "CELERY_BROKER_URL": "redis://example:6379/3",
            "DJANGO_DEBUG": "true",  # not Celery's: ignored here
        }
    )
    assert settings == {
        "CELERY_WORKER_CONCURRENCY": 7,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 3600},
        "CELERY_TASK_TIME_LIMIT": 90.5,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 2,
        "CELERY_ACCEPT_CONTENT": ["json", "msgpack"],
        "CELERY_BROKER_URL": "redis://example:6379/3",
    }


def test_json_array_and_false_booleans() -> None:
    settings = celery_settings_from_env({"CELERY_ACCEPT_CONTENT": '["json"]', "CELERY_TASK_ACKS_LATE": "off"})
    assert settings == {"CELERY_ACCEPT_CONTENT": ["json"], "CELERY_TASK_ACKS_LATE": False}


def test_a_typo_is_named_with_a_suggestion() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"CELERY_WORKR_CONCURRENCY.*did you mean CELERY_WORKER_CONCURRENCY"):
        celery_settings_from_env({"CELERY_WORKR_CONCURRENCY": "7"})


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("CELERY_WORKER_PREFETCH_MULTIPLIER", "four", "is not an int"),
        ("CELERY_TASK_ACKS_LATE", "maybe", "is not a boolean"),
        ("CELERY_BROKER_TRANSPORT_OPTIONS", "{visibility_timeout: 1}", "is not valid JSON"),
        ("CELERY_BROKER_TRANSPORT_OPTIONS", "[1, 2]", "must be a JSON object"),
        ("CELERY_TASK_TIME_LIMIT", "2m", "is not a float"),
    ],
)
def test_a_malformed_value_is_named(name: str, value: str, reason: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"{name}=.*{reason}"):
        celery_settings_from_env({name: value})


def test_variables_celery_reads_itself_are_not_settings() -> None:
    assert celery_settings_from_env({"CELERY_LOG_LEVEL": "DEBUG", "CELERY_SKIP_CHECKS": "1"}) == {}


def test_strict_env_names_a_malformed_variable() -> None:
    env = StrictEnv()
    env.ENVIRON = {"DJANGO_DEBUG": "ture", "WEB_CONCURRENCY": "two"}
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG='ture' is not a boolean"):
        env.bool("DJANGO_DEBUG")
    with pytest.raises(ImproperlyConfigured, match="WEB_CONCURRENCY='two' is malformed"):
        env.int("WEB_CONCURRENCY")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        env.str("DJANGO_SECRET_KEY")


def test_the_celery_app_reads_the_settings_through_its_namespace() -> None:
    from config.celery_app import app

    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier >= 2
    assert app.conf.broker_transport_options["visibility_timeout"] > app.conf.task_time_limit
    assert app.conf.task_ignore_result is True
    assert app.conf.accept_content == ["json"]
    assert app.conf.broker_connection_retry_on_startup is True
    # A cancel on the gevent pool ends in an acknowledgement: running tasks finish instead (see the settings).
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert app.conf.broker_transport_options["socket_timeout"] > 1  # above the consumer's 1 s BRPOP
    assert app.conf.task_publish_retry_policy["max_retries"] <= 3


def test_transport_options_from_the_environment_add_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from config.settings import base

    monkeypatch.setenv("CELERY_BROKER_TRANSPORT_OPTIONS", '{"visibility_timeout": 20}')
    try:
        reloaded = importlib.reload(base)
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == 20
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"] == 5
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_interval"] == 5
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["worker_liveness_timeout"] == 15
    finally:
        monkeypatch.delenv("CELERY_BROKER_TRANSPORT_OPTIONS")
        importlib.reload(base)


def test_a_typo_stops_django_from_starting() -> None:
    assert "CELERY_WORKR_CONCURRENCY is not a Celery setting" in start_up_refused("CELERY_WORKR_CONCURRENCY", "7")


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "CERT_REQUIRED"), ("?ssl_cert_reqs=none", "CERT_NONE"), ("?ssl_cert_reqs=CERT_OPTIONAL", "CERT_OPTIONAL")],
)
def test_a_rediss_broker_url_keeps_tls(monkeypatch: pytest.MonkeyPatch, query: str, expected: str) -> None:
    """The transport is named in the settings, so kombu no longer sees the rediss:// scheme: the settings turn it
    into broker_use_ssl, and the connection Celery makes from them is a TLS one."""
    import importlib
    import ssl

    import redis
    from celery import Celery

    from config.settings import base

    monkeypatch.setenv("CELERY_BROKER_URL", f"rediss://:secret@redis.example:6380/0{query}")
    try:
        reloaded = importlib.reload(base)
        wanted = {"ssl_cert_reqs": getattr(ssl, expected)}
        use_ssl = reloaded.CELERY_BROKER_USE_SSL
        assert use_ssl == wanted
        app = Celery(set_as_current=False)
        app.conf.update(
            broker_url=reloaded.CELERY_BROKER_URL,
            broker_transport=reloaded.CELERY_BROKER_TRANSPORT,
            broker_use_ssl=use_ssl,
        )
        with app.connection_for_write() as connection:
            assert connection.ssl == wanted
            # The parameters the channel gives redis-py, without connecting (kombu's Channel pings at creation).
            transport: Any = connection.transport
            channel = object.__new__(transport.Channel)
            channel.connection = connection.transport
            params = channel._connparams()
        assert issubclass(params["connection_class"], redis.SSLConnection)
        assert params["ssl_cert_reqs"] == getattr(ssl, expected)
    finally:
        monkeypatch.undo()
        importlib.reload(base)


def test_a_sentinel_broker_url_selects_the_sentinel_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from config.settings import base

    monkeypatch.setenv("CELERY_BROKER_URL", "sentinel://s1:26379/0;sentinel://s2:26379/0")
    monkeypatch.setenv("CELERY_BROKER_TRANSPORT_OPTIONS", '{"master_name": "broker"}')
    try:
        reloaded = importlib.reload(base)
        assert reloaded.CELERY_BROKER_TRANSPORT == "celery_runtime.transport:SentinelTransport"
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] == "broker"
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["worker_liveness_timeout"] == 15
    finally:
        monkeypatch.undo()
        importlib.reload(base)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CELERY_BROKER_URL", "amqp://rabbit:5672//", "CELERY_BROKER_URL: the scheme amqp://"),
        ("CELERY_BROKER_URL", "sentinel://sentinel:26379/0", "a sentinel:// CELERY_BROKER_URL needs master_name"),
        ("CELERY_BROKER_URL", "sentinel://s1:26379/0;redis://s2:6379/0", "every URL of a Sentinel broker"),
        ("CELERY_BROKER_URL", "rediss://redis:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs=CERT_MAYBE"),
        ("CELERY_BROKER_TRANSPORT_OPTIONS", '{"global_keyprefix": "app:"}', "global_keyprefix is not supported"),
    ],
)
def test_a_broker_the_transport_cannot_keep_stops_start_up(variable: str, value: str, message: str) -> None:
    assert message in start_up_refused(variable, value)


def test_a_malformed_django_tasks_queue_stops_start_up() -> None:
    stderr = start_up_refused("DJANGO_TASKS_QUEUES", "default,reports queue")
    assert "DJANGO_TASKS_QUEUES: 'reports queue' is not a queue name" in stderr, stderr


def test_task_routes_from_the_environment_route_tasks_to_their_queue() -> None:
    from celery import Celery

    from config.env import celery_settings_from_env

    routes = celery_settings_from_env({"CELERY_TASK_ROUTES": '{"calc.tasks.*": {"queue": "math"}}'})
    app = Celery(set_as_current=False)
    app.conf.task_routes = routes["CELERY_TASK_ROUTES"]
    assert app.amqp.router.route({}, "calc.tasks.add")["queue"].name == "math"
    assert app.amqp.router.route({}, "logs.tasks.log_write_task")["queue"].name == "celery"


def start_up_refused(variable: str, value: str) -> str:
    """`manage.py check` with `variable` set to `value`: asserts that start-up stops, returns what it said."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_a_misspelt_django_variable_stops_start_up_naming_the_one_meant() -> None:
    stderr = start_up_refused("DJANGO_DEBGU", "true")
    assert "DJANGO_DEBGU is not a variable this project reads; did you mean DJANGO_DEBUG?" in stderr, stderr


def test_django_variables_of_any_settings_module_or_of_django_itself_are_known() -> None:
    reject_unknown_django_variables(
        {
            "DJANGO_SECURE_HSTS_SECONDS": "60",  # read by the production settings only
            "DJANGO_SECRET_KEY_FILE": "/run/secrets/key",
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DJANGO_SUPERUSER_PASSWORD": "secret",  # createsuperuser --noinput
        }
    )


def test_a_variable_read_through_the_env_helper_is_known_without_a_list() -> None:
    with pytest.raises(ImproperlyConfigured, match="DJANGO_REPORTS_BUCKET is not a variable"):
        reject_unknown_django_variables({"DJANGO_REPORTS_BUCKET": "reports"})
    env.str("DJANGO_REPORTS_BUCKET", default="")  # what a user's setting does
    try:
        reject_unknown_django_variables({"DJANGO_REPORTS_BUCKET": "reports"})
    finally:
        env.names_read.discard("DJANGO_REPORTS_BUCKET")
