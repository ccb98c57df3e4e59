from django.db import models


class ProbeRecord(models.Model):
    """Rows written by the diagnostic tasks; `key` is unique so a duplicate makes a real IntegrityError."""

    key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
