import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "payload", "expected"),
    [
        ("/tasks/add/", {"x": 2, "y": 3}, 5),
        ("/tasks/mul/", {"x": 4, "y": 2.5}, 10.0),
        ("/tasks/xsum/", {"numbers": [1, 2, 3.5]}, 6.5),
        ("/tasks/xsum/", {"numbers": []}, 0),
    ],
)
def test_arithmetic_runs_and_its_result_is_read_back(
    client: Any, json_post: Any, celery_eager: None, url: str, payload: Any, expected: float
) -> None:
    response = json_post(url, payload)
    assert response.status_code == 202
    status = client.get(response.json()["url"]).json()
    assert status["state"] == "SUCCESS"
    assert status["result"] == expected
    assert status["error"] is None


def test_the_debug_task_reports_its_request(client: Any, celery_eager: None) -> None:
    response = client.post("/tasks/debug/")
    assert response.status_code == 202
    status = client.get(response.json()["url"]).json()
    assert status["state"] == "SUCCESS"
    assert status["result"]["id"] == response.json()["task_id"]


def test_form_input_is_accepted(client: Any, celery_eager: None) -> None:
    assert client.post("/tasks/add/", {"x": "2", "y": "-3.5"}).status_code == 202
    assert client.post("/tasks/xsum/", {"numbers": "1,2,3"}).status_code == 202


@pytest.mark.parametrize(
    ("url", "payload", "reason"),
    [
        ("/tasks/add/", {"x": 1}, "y is required"),
        ("/tasks/add/", {"x": "one", "y": 2}, "x must be a number"),
        ("/tasks/add/", {"x": True, "y": 2}, "x must be a number, not bool"),
        ("/tasks/mul/", {"x": None, "y": 2}, "x must be a number, not NoneType"),
        ("/tasks/mul/", {"x": 1e300, "y": 1e300}, "between -1e18 and 1e18"),
        ("/tasks/xsum/", {}, "numbers is required"),
        ("/tasks/xsum/", {"numbers": [1, "two"]}, "numbers[1] must be a number"),
        ("/tasks/xsum/", {"numbers": list(range(10_001))}, "at most 10000"),
    ],
)
def test_bad_arithmetic_input_is_a_400(json_post: Any, url: str, payload: Any, reason: str) -> None:
    response = json_post(url, payload)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_non_finite_numbers_are_refused(client: Any) -> None:
    response = client.post("/tasks/add/", '{"x": NaN, "y": 1}', content_type="application/json")
    assert response.status_code == 400
    assert "finite" in response.json()["error"]


def test_an_unknown_task_id_is_pending(client: Any) -> None:
    body = client.get(f"/tasks/{uuid.uuid4()}/").json()
    assert body["state"] == "PENDING"
    assert body["ready"] is False


def test_a_malformed_task_id_is_a_400(client: Any) -> None:
    response = client.get("/tasks/not-a-uuid/")
    assert response.status_code == 400


def test_get_on_a_start_url_is_refused(client: Any) -> None:
    assert client.get("/tasks/add/").status_code == 405
