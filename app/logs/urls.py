from django.urls import path

from logs import views

app_name = "logs"
urlpatterns = [
    path("", views.log_collection, name="collection"),
    path("<uuid:request_id>/", views.log_detail, name="detail"),
    path("<uuid:request_id>/summary/", views.log_summary_start, name="summary-start"),
    path("summaries/<uuid:result_id>/", views.log_summary_detail, name="summary-detail"),
]
