from django.urls import path

from calc import views

app_name = "calc"
urlpatterns = [
    path("add/", views.add_start, name="add"),
    path("mul/", views.mul_start, name="mul"),
    path("xsum/", views.xsum_start, name="xsum"),
    path("debug/", views.debug_start, name="debug"),
    path("<str:task_id>/", views.task_status, name="task-status"),
]
