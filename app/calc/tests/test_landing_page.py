"""The landing page's calculation forms: sent through the page's form, with the JSON API's checks and errors."""

import re
from typing import Any

import pytest
from django_celery_results.models import TaskResult

from tests.landing_page import form_is_refused_with_the_reason

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"action": "add", "x": "2"}, "y is required"),
        ({"action": "mul", "x": "two", "y": "3"}, "x must be a number, not &#x27;two&#x27;"),
        ({"action": "xsum", "numbers": "1, nan"}, "numbers[1] must be a finite number"),
    ],
)
def test_bad_input_is_a_400_with_the_apis_reason_and_sends_nothing(
    client: Any, celery_eager: None, form: dict[str, str], reason: str
) -> None:
    form_is_refused_with_the_reason(client, form, reason)
    assert not TaskResult.objects.exists()


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
