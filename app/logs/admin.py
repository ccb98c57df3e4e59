from django.contrib import admin

from logs.models import Log


@admin.register(Log)
class LogAdmin(admin.ModelAdmin):
    list_display = ("id", "text", "request_id", "created_at")
    search_fields = ("text", "request_id")
    readonly_fields = ("request_id", "created_at")
