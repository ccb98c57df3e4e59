"""The example's django.tasks task (logs.tasks.log_summarize_task) beside its Celery one: enqueued by POST
/logs/<request_id>/summary/, run by the real gevent worker, its result read back with Django's API."""

from typing import Any

import pytest
from django_celery_results.models import TaskResult as ResultRow

from logs.models import Log
from tests.outages import post_is_refused_with_a_bounded_503
from tests.worker.conftest import wait_until


@pytest.mark.worker
def test_a_summary_is_enqueued_run_by_the_worker_and_read_back(worker: dict[str, Any], client: Any) -> None:
    log = Log.objects.create(request_id="6f1f0c1e-0000-4000-8000-000000000001", text="three short words")
    response = client.post(f"/logs/{log.request_id}/summary/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "READY"
    url = response.json()["url"]
    body = wait_until(
        lambda: (r := client.get(url).json())["status"] == "SUCCESSFUL" and r, timeout=10, message="not summarized"
    )
    assert body["summary"] == {"log_id": log.pk, "words": 3, "characters": 17}
    assert body["attempts"] == 1


@pytest.mark.django_db
def test_a_summary_of_an_unknown_log_is_a_404(client: Any) -> None:
    assert client.post("/logs/6f1f0c1e-0000-4000-8000-000000000002/summary/").status_code == 404
    assert client.get("/logs/summaries/6f1f0c1e-0000-4000-8000-000000000003/").status_code == 404


@pytest.mark.django_db(transaction=True)  # sent on commit: at once, outside a test transaction
def test_enqueueing_with_the_broker_down_is_a_bounded_503_with_retry_after(
    client: Any, broker_unreachable: None
) -> None:
    log = Log.objects.create(request_id="6f1f0c1e-0000-4000-8000-000000000004", text="hello")
    results_before = ResultRow.objects.count()
    post_is_refused_with_a_bounded_503(client, f"/logs/{log.request_id}/summary/", {}, dependency="broker")
    # No result row is left behind for a task that was never sent (it would read READY for ever).
    assert ResultRow.objects.count() == results_before
