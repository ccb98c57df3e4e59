from django.db import models


class Log(models.Model):
    """A line of text written by the worker, as in the posts this template grew from."""

    # Chosen by the web before the task is queued: it makes the task idempotent (a redelivered task finds
    # its row) and gives the client something to follow.
    request_id = models.UUIDField(unique=True, editable=False)
    text = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.text
