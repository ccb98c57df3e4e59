import time
from typing import Any


def post_is_refused_with_a_bounded_503(client: Any, url: str, body: dict[str, Any], *, dependency: str) -> None:
    """POSTs `body` to `url` while `dependency` is down: a 503 JSON naming it, with Retry-After, within seconds."""
    started = time.monotonic()
    response = client.post(url, body, content_type="application/json")
    took = time.monotonic() - started
    assert response.status_code == 503, response.content
    assert response.json()["unavailable"] == dependency
    assert dependency in response.json()["error"]
    assert int(response["Retry-After"]) > 0
    assert took < 6, f"the refusal took {took:.1f}s"
