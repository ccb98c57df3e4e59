from django.db import models


class Heartbeat(models.Model):
    """One row per periodic task, updated on every run, so beat's work shows in the admin and over HTTP."""

    name = models.CharField(max_length=100, unique=True)
    runs = models.PositiveBigIntegerField(default=0)
    last_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.runs} runs, last at {self.last_run_at:%Y-%m-%d %H:%M:%S}"
