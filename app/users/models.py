"""The project's user model, from the first migration on (AUTH_USER_MODEL = "users.User").

Django's own `auth.User` cannot be swapped for a model of the project's once tables refer to it, short of a
migration ordeal; a model of the project's from day one can take fields (a display name, a tenant) whenever they
are needed, in an ordinary migration: https://docs.djangoproject.com/en/6.0/topics/auth/customizing/#using-a-custom-user-model-when-starting-a-project
Refer to it as `settings.AUTH_USER_MODEL` in a ForeignKey and `get_user_model()` in code, never `users.User`
directly in other apps' models."""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """Django's user, as the project's own model: add fields here."""
