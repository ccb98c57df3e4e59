"""The landing page at /: the services, the links, and the example tasks sent through its forms."""

import re
from typing import Any

import pytest
from django.test import override_settings

from logs.models import Log

pytestmark = pytest.mark.django_db


@override_settings(FLOWER_URL="http://localhost:5555/")
def test_the_page_shows_the_services_and_where_to_go(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    services = page[page.index("<h2>Services</h2>") : page.index("<h2>Where to go</h2>")]
    # The test database and the test broker are real and up; each row says so.
    assert re.search(r"<th>Database</th><td><span class=\"ok\">up</span>", services), services
    assert re.search(r"<th>Broker</th><td><span class=\"ok\">up</span>", services), services
    assert 'href="/admin/"' in page
    assert 'href="http://localhost:5555/"' in page
    assert 'href="/health/"' in page
    assert '<meta http-equiv="refresh"' not in page  # nothing sent, nothing to wait for


@override_settings(FLOWER_URL="")
def test_without_a_flower_url_there_is_no_flower_link(client: Any) -> None:
    assert ">Flower</a>" not in client.get("/").content.decode()


@override_settings(LANDING_PAGE=False)
def test_the_page_is_a_404_when_turned_off(client: Any) -> None:
    assert client.get("/").status_code == 404
    assert client.post("/", {"action": "log", "text": "hello"}).status_code == 404
    assert not Log.objects.exists()


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
        ({"action": "add", "x": "2"}, "y is required"),
        ({"action": "mul", "x": "two", "y": "3"}, "x must be a number, not &#x27;two&#x27;"),
        ({"action": "xsum", "numbers": "1, nan"}, "numbers[1] must be a finite number"),
        ({"action": "divide"}, "unknown action &#x27;divide&#x27;"),
    ],
)
def test_bad_input_is_a_400_with_the_apis_reason_and_sends_nothing(
    client: Any, celery_eager: None, form: dict[str, str], reason: str
) -> None:
    response = client.post("/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Not sent:</strong> " + reason in page, page[page.find('id="error"') :][:300]
    assert not Log.objects.exists()


@pytest.mark.parametrize(
    ("form", "result"),
    [
        ({"action": "add", "x": "2", "y": "3"}, "5"),
        ({"action": "mul", "x": "4", "y": "2.5"}, "10.0"),
        ({"action": "xsum", "numbers": "1, 2, 3.5"}, "6.5"),
    ],
)
def test_a_calculation_sent_from_the_page_comes_back(
    client: Any, celery_eager: None, form: dict[str, str], result: str
) -> None:
    response = client.post("/", form)
    assert response.status_code == 302
    assert re.fullmatch(rf"/\?task=[0-9a-f-]{{36}}&op={form['action']}#try-calc", response["Location"])
    page = client.get(response["Location"]).content.decode()
    assert f'<span class="ok">{result}</span>' in page
