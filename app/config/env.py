"""The one place the environment is read.

`env` is django-environ with two changes: a value that cannot be cast stops start-up with an error
naming the variable, and booleans accept only true/false/yes/no/on/off/1/0 (django-environ turns any
unknown word into False, so `DJANGO_DEBUG=ture` would pass silently).

`celery_settings_from_env` turns every `CELERY_*` variable into the Django setting of that name, typed
by Celery's own table of options, so any Celery setting can be set from the environment.

`reject_unknown_django_variables` stops start-up on a `DJANGO_*` variable that nothing reads (`DJANGO_DEBGU`),
naming the closest one that something does.

Both read Docker-style secret files: when `NAME_FILE` is set (`DJANGO_SECRET_KEY_FILE=/run/secrets/key`),
the value of NAME is that file's content. Setting both NAME and NAME_FILE is an error, so it is never
unclear which one is in force.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0")


def read_secret_file(file_variable: str, path: str) -> str:
    """The content of the file a NAME_FILE variable names. Errors name the variable, never the content."""
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ImproperlyConfigured(f"{file_variable}={path!r} cannot be read: {reason}") from exc
    # `echo secret > file` and editors end the file with a newline that is not part of the secret.
    value = content.rstrip("\r\n")
    if not value:
        raise ImproperlyConfigured(f"{file_variable}={path!r} is empty")
    return value


def _only_one_of(name: str, environ_: Mapping[str, str]) -> None:
    # An empty NAME (an env file's `NAME=` line) beside NAME_FILE is not a second value.
    if environ_.get(name) and f"{name}_FILE" in environ_:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set: set only one of them")


class StrictEnv(environ.Env):
    def __init__(self, **scheme: Any) -> None:
        super().__init__(**scheme)
        self.names_read: set[str] = set()  # every variable asked for, set or not: django_variables_unknown

    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False
    ) -> Any:
        self.names_read.add(var)
        file_variable = f"{var}_FILE"
        if file_variable in self.ENVIRON:
            _only_one_of(var, self.ENVIRON)
            raw = read_secret_file(file_variable, self.ENVIRON[file_variable])
            try:
                return parse_bool(file_variable, raw) if cast is bool else self.parse_value(raw, cast)
            except (ImproperlyConfigured, ValueError, TypeError):
                # Not chained: the parse error would quote the file's content, which may be a secret.
                raise ImproperlyConfigured(f"the content of {file_variable} is not a valid {var}") from None
        if cast is bool and var in self.ENVIRON:
            return parse_bool(var, self.ENVIRON[var])
        if var not in self.ENVIRON and default is self.NOTSET:
            raise ImproperlyConfigured(
                f"Set the {var} environment variable, or {file_variable} to the path of a file that holds it"
            )
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"{var}={self.ENVIRON.get(var)!r} is malformed: {exc}") from exc


env = StrictEnv()


# Variables Celery reads from the environment itself, which are not settings.
_CELERY_PROCESS_VARIABLES = frozenset(
    {
        "CELERY_BENCH",
        "CELERY_BENCH_EVERY",
        "CELERY_CONFIG_MODULE",
        "CELERY_CUSTOM_WORKER_POOL",
        "CELERY_LOADER",
        "CELERY_LOG_FILE",
        "CELERY_LOG_LEVEL",
        "CELERY_LOG_REDIRECT",
        "CELERY_LOG_REDIRECT_LEVEL",
        "CELERY_RDB_HOST",
        "CELERY_RDB_PORT",
        "CELERY_SKIP_CHECKS",
        "CELERY_TRACE_APP",
    }
)


def _celery_option_types() -> dict[str, str]:
    """Django setting name (CELERY_WORKER_CONCURRENCY) -> Celery's declared type ('int', 'bool', ...)."""
    from celery.app.defaults import NAMESPACES, flatten

    types = {}
    for name, option in cast(Any, flatten)(NAMESPACES):  # celery-types declares flatten's result wrongly
        declared = option.type if isinstance(option.type, str) else option.type.__name__
        types[f"CELERY_{name.upper()}"] = declared
    return types


def _parse_json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not valid JSON: {exc}") from exc


def _parse_celery_value(name: str, declared: str, raw: str) -> Any:
    if declared == "bool":
        return parse_bool(name, raw)
    if declared in {"int", "float"}:
        cast, article = (int, "an") if declared == "int" else (float, "a")
        try:
            return cast(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={raw!r} is not {article} {declared}") from None
    if declared == "dict":
        value = _parse_json(name, raw)
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f'{name}={raw!r} must be a JSON object, e.g. {{"key": 1}}')
        return value
    if declared in {"list", "tuple"}:
        if raw.lstrip().startswith("["):
            value = _parse_json(name, raw)
            if not isinstance(value, list):
                raise ImproperlyConfigured(f"{name}={raw!r} must be a JSON array or a comma-separated list")
        else:
            value = [item.strip() for item in raw.split(",") if item.strip()]
        return tuple(value) if declared == "tuple" else value
    if declared == "any":
        # Numbers, booleans, objects and arrays as JSON (CELERY_WORKER_CONCURRENCY=7); anything else is a string.
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    if declared == "bytes":
        return raw.encode()
    return raw


def celery_settings_from_env(environ_: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every CELERY_* variable, typed; an unknown name or a malformed value raises ImproperlyConfigured.

    CELERY_<SETTING>_FILE (e.g. CELERY_BROKER_URL_FILE, whose URL holds the Redis password) gives the
    setting the content of that file.
    """
    source = os.environ if environ_ is None else environ_
    types = _celery_option_types()
    settings: dict[str, Any] = {}
    for variable, value in sorted(source.items()):
        if not variable.startswith("CELERY_") or variable in _CELERY_PROCESS_VARIABLES:
            continue
        name, raw = variable, value
        if name not in types and name.endswith("_FILE") and name.removesuffix("_FILE") in types:
            name = name.removesuffix("_FILE")
            _only_one_of(name, source)
            raw = read_secret_file(variable, value)
        declared = types.get(name)
        if declared is None:
            close = difflib.get_close_matches(name, types, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ImproperlyConfigured(f"{name} is not a Celery setting{hint} (see Celery's configuration reference)")
        try:
            settings[name] = _parse_celery_value(name, declared, raw)
        except ImproperlyConfigured:
            if variable == name:
                raise
            # Not the parse error: it would quote the file's content, which may be a secret.
            raise ImproperlyConfigured(f"the content of {variable} is not a valid {name}") from None
    return settings


# DJANGO_* variables Django itself reads from the environment, which no setting names.
_DJANGO_PROCESS_VARIABLES = frozenset(
    {
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "DJANGO_COLORS",
        "DJANGO_WATCHMAN_TIMEOUT",
        "DJANGO_RUNSERVER_HIDE_WARNING",
        "DJANGO_TEST_PROCESSES",
    }
)
_DJANGO_PROCESS_PREFIXES = ("DJANGO_SUPERUSER_",)  # createsuperuser --noinput's fields
_DJANGO_NAME = re.compile(r"""["'](DJANGO_[A-Z0-9_]+)["']""")


def django_variables_read(package: Path = Path(__file__).parent) -> set[str]:
    """The DJANGO_* names the project reads: every one that `env` was asked for in this process, and every quoted
    DJANGO_* name in the config package's source (so that a variable only another settings module reads, the
    production one's in a development process say, is known too). Nothing to keep up to date by hand."""
    names = set(env.names_read)
    for path in package.rglob("*.py"):
        names.update(_DJANGO_NAME.findall(path.read_text(encoding="utf-8")))
    return {name for name in names if name.startswith("DJANGO_")}


def reject_unknown_django_variables(environ_: Mapping[str, str] | None = None) -> None:
    """A DJANGO_* variable that nothing reads stops start-up, as a CELERY_* one does: a typo would be ignored."""
    source = os.environ if environ_ is None else environ_
    known = django_variables_read() | _DJANGO_PROCESS_VARIABLES
    for variable in sorted(source):
        if not variable.startswith("DJANGO_") or variable.startswith(_DJANGO_PROCESS_PREFIXES):
            continue
        name = variable.removesuffix("_FILE") if variable.removesuffix("_FILE") in known else variable
        if name in known:
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ImproperlyConfigured(f"{variable} is not a variable this project reads{hint}")
