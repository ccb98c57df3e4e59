"""The example endpoints change state without a login: production keeps them off unless switched on, and then
answers their writes only with the write token."""

import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

TOKEN = "test-token-" + "x" * 8  # not a secret: these tests' own

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "x" * 50,
    "DJANGO_ALLOWED_HOSTS": "example.com",
}


def production(code: str, **variables: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(PRODUCTION, **variables)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_serves_no_example_endpoint_by_default() -> None:
    result = production(
        "from django.urls import resolve, Resolver404\n"
        "for path in ('/logs/', '/tasks/add/', '/heartbeats/'):\n"
        "    try: resolve(path); print('served', path)\n"
        "    except Resolver404: print('not served', path)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["not served /logs/", "not served /tasks/add/", "not served /heartbeats/"]


def test_production_refuses_example_endpoints_without_a_write_token() -> None:
    result = production("", DJANGO_EXAMPLE_ENDPOINTS="true")
    assert result.returncode != 0
    assert "DJANGO_EXAMPLE_ENDPOINTS=true in production needs DJANGO_API_WRITE_TOKEN" in result.stderr
    served = production(
        "from django.urls import resolve; resolve('/logs/'); print('served')",
        DJANGO_EXAMPLE_ENDPOINTS="true",
        DJANGO_API_WRITE_TOKEN=TOKEN,
    )
    assert served.stdout.strip() == "served", served.stderr


@override_settings(API_WRITE_TOKEN=TOKEN)
def test_with_a_write_token_a_write_needs_it(client: Any, celery_eager: None) -> None:
    refused = client.post("/logs/", {"text": "no token"})
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"
    wrong = client.post("/logs/", {"text": "wrong token"}, HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    accepted = client.post("/logs/", {"text": "with the token"}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert accepted.status_code == 202
    assert client.get("/logs/").status_code == 200  # reads need no token
