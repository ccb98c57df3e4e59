from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from users.models import User

pytestmark = pytest.mark.django_db


def test_the_user_model_is_the_projects_own() -> None:
    assert settings.AUTH_USER_MODEL == "users.User"
    assert get_user_model() is User


def test_createsuperuser_makes_one_the_admin_lists(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-test-password-1")
    call_command("createsuperuser", interactive=False, username="root", email="root@example.com", verbosity=0)
    user = User.objects.get(username="root")
    assert user.is_superuser
    client.force_login(user)
    listed = client.get("/admin/users/user/")
    assert listed.status_code == 200
    assert b"root@example.com" in listed.content
