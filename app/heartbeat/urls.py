from django.urls import path

from heartbeat.views import heartbeat_collection

urlpatterns = [
    path("", heartbeat_collection, name="heartbeats"),
]
