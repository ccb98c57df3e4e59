"""Production: docker-compose.prod.yml behind the reverse proxy in deploy/caddy/.

No secret has a default: DJANGO_SECRET_KEY, DATABASE_URL and CELERY_BROKER_URL (which hold the passwords)
must be set, each either as itself or as NAME_FILE naming a file that holds it (Docker secrets, see
config.env). A missing one stops start-up with an error that names it.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env
from config.settings.base import *  # noqa: F403
from config.settings.base import LOGGING

DEBUG = False
# Off unless DJANGO_LANDING_PAGE=true: it shows the services and lets anyone who reaches it enqueue tasks.
LANDING_PAGE = env.bool("DJANGO_LANDING_PAGE", default=False)
FLOWER_URL = env.str("DJANGO_FLOWER_URL", default="/flower/")
# The container healthcheck asks for /health/ with `Host: localhost`. Nobody outside can send that Host:
# the proxy forwards only requests for DJANGO_ALLOWED_HOSTS' domain, and the web publishes no port.
ALLOWED_HOSTS = [*env.list("DJANGO_ALLOWED_HOSTS"), "localhost"]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Security behind a TLS-terminating proxy: https://docs.djangoproject.com/en/6.0/howto/deployment/checklist/
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # the container healthcheck speaks plain HTTP inside the network
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The migrate step runs `check --deploy --fail-level WARNING` before every deploy. A check that does not
# apply to a site (say, security.W021 for a domain that will not join the HSTS preload list) can be silenced
# by name in DJANGO_SILENCED_SYSTEM_CHECKS, where a reviewer sees it. None is by default.
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])
# >>> example apps
# Their endpoints change state without a login: off unless switched on, and then only with a write token.
EXAMPLE_ENDPOINTS = env.bool("DJANGO_EXAMPLE_ENDPOINTS", default=False)
if EXAMPLE_ENDPOINTS and not API_WRITE_TOKEN:  # noqa: F405
    raise ImproperlyConfigured(
        "DJANGO_EXAMPLE_ENDPOINTS=true in production needs DJANGO_API_WRITE_TOKEN: the example endpoints' POSTs change "
        "state, and answer only requests with Authorization: Bearer <that token>"
    )
# <<< example apps

# One JSON object per line on stdout, for `docker compose logs` and any log shipper.
LOGGING["handlers"]["console"]["formatter"] = "json"
LOGGING["handlers"]["console"]["stream"] = "ext://sys.stdout"

# Errors and slow transactions to Sentry, from the web and from Celery (worker and beat), when a DSN is set.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
        send_default_pii=False,
    )
