from django.db import models


class Run(models.Model):
    """One row per execution of a test task, so tests can count real runs."""

    key = models.CharField(max_length=100)
    worker_pid = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"run of {self.key} in {self.worker_pid}"
