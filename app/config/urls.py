from django.contrib import admin
from django.urls import include, path

from config.health import health
from heartbeat.views import heartbeat_collection

urlpatterns = [
    path("", include("home.urls")),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("logs/", include("logs.urls")),
    path("tasks/", include("calc.urls")),
    path("heartbeats/", heartbeat_collection, name="heartbeats"),
]
