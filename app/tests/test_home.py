"""The landing page at /: the services and the links. The example apps test their own forms on it."""

import re
from typing import Any

import pytest
from django.test import override_settings

from tests.landing_page import form_is_refused_with_the_reason

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


def test_an_unknown_action_is_a_400_with_the_reason(client: Any) -> None:
    form_is_refused_with_the_reason(client, {"action": "divide"}, "unknown action &#x27;divide&#x27;")


def test_the_page_counts_the_dead_letters(client: Any) -> None:
    """The messages the worker set aside show on the page, with how to deal with them."""
    import redis
    from django.conf import settings

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    entry = '{"reason":"malformed","queue":"celery","at":0,"raw":"shown on the landing page"}'
    before = broker.llen("unacked_dead_letters")
    broker.lpush("unacked_dead_letters", entry)
    try:
        row = client.get("/").content.decode().split('id="dead-letters">', 1)[1].split("</td>", 1)[0]
        assert f'<span class="bad">{before + 1}</span>' in row, row
        assert "dead_letters" in row
    finally:
        broker.lrem("unacked_dead_letters", 1, entry)
    row = client.get("/").content.decode().split('id="dead-letters">', 1)[1].split("</td>", 1)[0]
    assert (f'<span class="bad">{before}</span>' if before else '<span class="ok">0</span>') in row, row
