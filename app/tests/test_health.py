from typing import Any

import pytest


@pytest.mark.django_db
def test_health_reports_database_and_broker(client: Any) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
