"""The example's POST /logs/, run by the real gevent worker (the test-worker service)."""

from typing import Any

import pytest

from tests.worker.conftest import wait_until

pytestmark = pytest.mark.worker


def test_post_logs_is_written_by_the_worker(worker: dict[str, Any], client: Any) -> None:
    response = client.post("/logs/", {"text": "written by the gevent worker"})
    assert response.status_code == 202
    url = response.json()["url"]
    body = wait_until(
        lambda: client.get(url).status_code == 200 and client.get(url).json(), timeout=10, message="row not written"
    )
    assert body["text"] == "written by the gevent worker"
