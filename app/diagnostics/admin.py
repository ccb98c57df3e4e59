from django.contrib import admin

from diagnostics.models import ProbeRecord


@admin.register(ProbeRecord)
class ProbeRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "created_at")
