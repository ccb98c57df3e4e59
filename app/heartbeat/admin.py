from django.contrib import admin

from heartbeat.models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "runs", "last_run_at")
    readonly_fields = ("name", "runs", "last_run_at")
