from django.urls import path

from logs import views

app_name = "logs"
urlpatterns = [
    path("", views.log_collection, name="collection"),
    path("<uuid:request_id>/", views.log_detail, name="detail"),
]
