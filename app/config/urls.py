from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config.health import health

urlpatterns = [
    path("", include("home.urls")),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
]
# >>> example apps
if settings.EXAMPLE_ENDPOINTS:  # off in production unless switched on (config.settings.production)
    urlpatterns += [
        path("logs/", include("logs.urls")),
        path("tasks/", include("calc.urls")),
        path("heartbeats/", include("heartbeat.urls")),
    ]
# <<< example apps
