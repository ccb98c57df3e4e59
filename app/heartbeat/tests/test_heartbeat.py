from typing import Any

import pytest

from heartbeat.models import Heartbeat
from heartbeat.services import heartbeat_record
from heartbeat.tasks import heartbeat_record_task

pytestmark = pytest.mark.django_db


def test_heartbeat_counts_every_run() -> None:
    heartbeat_record(name="beat")
    beat = heartbeat_record(name="beat")
    assert beat.runs == 2


def test_the_periodic_task_is_scheduled_from_the_settings(celery_eager: None, client: Any) -> None:
    from config.celery_app import app

    entry = app.conf.beat_schedule["record-heartbeat"]
    assert entry["task"] == heartbeat_record_task.name
    heartbeat_record_task.delay()
    assert Heartbeat.objects.get(name="beat").runs == 1
    assert client.get("/heartbeats/").json()["heartbeats"][0]["runs"] == 1
