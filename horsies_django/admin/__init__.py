"""The operator's admin: the task list and detail, actions, the dashboard and the workers page.

Found by Django's admin autodiscovery; importing the modules registers their `ModelAdmin`s.
"""

from .attempts import TaskAttemptInline
from .schedules import ScheduleAdmin
from .tasks import TaskAdmin
from .workers import WorkerProcessAdmin

__all__ = ["ScheduleAdmin", "TaskAdmin", "TaskAttemptInline", "WorkerProcessAdmin"]
