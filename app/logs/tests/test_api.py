import uuid
from typing import Any

import pytest

from logs.models import Log
from logs.services import log_create

pytestmark = pytest.mark.django_db


def test_post_form_enqueues_on_commit_and_the_task_writes_the_row(
    client: Any, celery_eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/logs/", {"text": "hello from a form"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert len(callbacks) == 1  # queued only once the request's transaction committed
    log = Log.objects.get(request_id=body["request_id"])
    assert log.text == "hello from a form"
    followed = client.get(body["url"])
    assert followed.status_code == 200
    assert followed.json()["text"] == "hello from a form"


def test_post_json(json_post: Any, celery_eager: None, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = json_post("/logs/", {"text": "hello from JSON"})
    assert response.status_code == 202
    assert Log.objects.filter(text="hello from JSON").count() == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, "text is required"),
        ({"text": None}, "text is required"),
        ({"text": ""}, "text must not be empty"),
        ({"text": "   "}, "text must not be empty"),
        ({"text": "x" * 256}, "text is 256 characters; at most 255"),
        ({"text": 42}, "text must be a string, not int"),
        ({"text": ["a"]}, "text must be a string, not list"),
        ({"text": {"a": 1}}, "text must be a string, not dict"),
        ({"text": True}, "text must be a string, not bool"),
        ({"text": "nul\x00byte"}, "must not contain NUL"),
    ],
)
def test_bad_json_input_is_a_400_with_a_reason(json_post: Any, payload: Any, reason: str) -> None:
    response = json_post("/logs/", payload)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert Log.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ('["text"]', "application/json", "must be an object"),
        ("9" * 5000, "application/json", "not valid JSON"),
        ("text=a&text=b", "application/x-www-form-urlencoded", "given 2 times"),
        ("hello", "text/plain", "unsupported content type"),
        ("", "application/x-www-form-urlencoded", "text is required"),
    ],
)
def test_bad_bodies_are_a_400_with_a_reason(client: Any, body: str, content_type: str, reason: str) -> None:
    response = client.post("/logs/", body, content_type=content_type)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_max_length_text_is_accepted(
    json_post: Any, celery_eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert json_post("/logs/", {"text": "é" * 255}).status_code == 202
    assert Log.objects.get().text == "é" * 255


def test_list_is_newest_first_and_limited(client: Any) -> None:
    for index in range(3):
        log_create(request_id=uuid.uuid4(), text=f"line {index}")
    response = client.get("/logs/?limit=2")
    assert response.status_code == 200
    assert [log["text"] for log in response.json()["logs"]] == ["line 2", "line 1"]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
def test_list_rejects_a_bad_limit(client: Any, limit: str) -> None:
    assert client.get(f"/logs/?limit={limit}").status_code == 400


def test_detail_of_an_unwritten_log_is_a_404_that_says_so(client: Any) -> None:
    response = client.get(f"/logs/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert response.json()["status"] == "pending"


def test_log_create_is_idempotent_for_a_redelivered_task() -> None:
    request_id = uuid.uuid4()
    first = log_create(request_id=request_id, text="once")
    again = log_create(request_id=request_id, text="once")
    assert first.pk == again.pk
    assert Log.objects.count() == 1


def test_other_methods_are_refused(client: Any) -> None:
    assert client.delete("/logs/").status_code == 405
