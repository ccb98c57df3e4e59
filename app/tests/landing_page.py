from typing import Any


def form_is_refused_with_the_reason(client: Any, form: dict[str, str], reason: str) -> None:
    """POSTs `form` to the landing page: a 400, the page saying "Not sent:" and the reason, as the API words it."""
    response = client.post("/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Not sent:</strong> " + reason in page, page[page.find('id="error"') :][:300]
