"""The landing page's text form: sent through the page's form, with the JSON API's checks and errors."""

import re
from typing import Any

import pytest

from logs.models import Log
from tests.landing_page import form_is_refused_with_the_reason

pytestmark = pytest.mark.django_db


def test_a_text_sent_from_the_page_is_written_by_the_task_and_shown(
    client: Any, celery_eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/", {"action": "log", "text": "hello from the page"})
    assert response.status_code == 302
    assert len(callbacks) == 1  # sent once the request's transaction committed, as the API does
    match = re.fullmatch(r"/\?log=([0-9a-f-]{36})#try-log", response["Location"])
    assert match, response["Location"]
    assert Log.objects.get(request_id=match.group(1)).text == "hello from the page"
    page = client.get(response["Location"]).content.decode()
    assert "written</span> by the worker: “hello from the page”" in page
    assert '<meta http-equiv="refresh"' not in page


def test_a_text_not_written_yet_shows_queued_and_the_page_reloads(client: Any) -> None:
    page = client.get("/?log=3f2504e0-4f89-11d3-9a0c-0305e82c3301").content.decode()
    assert "queued</span>, waiting for the worker" in page
    assert '<meta http-equiv="refresh" content="2">' in page


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"action": "log", "text": "   "}, "text must not be empty"),
        ({"action": "log"}, "text is required"),
        ({"action": "log", "text": "x" * 256}, "text is 256 characters; at most 255 are allowed"),
    ],
)
def test_bad_input_is_a_400_with_the_apis_reason_and_sends_nothing(
    client: Any, celery_eager: None, form: dict[str, str], reason: str
) -> None:
    form_is_refused_with_the_reason(client, form, reason)
    assert not Log.objects.exists()
