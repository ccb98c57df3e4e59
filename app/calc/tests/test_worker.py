"""The example's tasks with results read back by id, run by the real gevent worker (the test-worker service)."""

from typing import Any

import pytest

from tests.worker.conftest import wait_until

pytestmark = pytest.mark.worker


def test_an_add_result_is_read_back_by_task_id(worker: dict[str, Any], client: Any) -> None:
    url = client.post("/tasks/add/", {"x": 19, "y": 23}, content_type="application/json").json()["url"]
    status = wait_until(lambda: (s := client.get(url).json())["ready"] and s, timeout=10, message="add never finished")
    assert status == {"task_id": url.split("/")[-2], "state": "SUCCESS", "ready": True, "result": 42, "error": None}


def test_the_debug_task_runs_on_the_worker(worker: dict[str, Any], client: Any) -> None:
    url = client.post("/tasks/debug/").json()["url"]
    status = wait_until(lambda: (s := client.get(url).json())["ready"] and s, timeout=10, message="debug_task")
    assert status["state"] == "SUCCESS"
    assert status["result"]["hostname"].startswith("celery@")
    assert status["result"]["delivery_info"]["routing_key"] == "celery"
