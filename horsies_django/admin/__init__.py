"""The operator's admin: the task list and detail, actions, the dashboard, the workers
and workflows pages.

Found by Django's admin autodiscovery; importing the modules registers their `ModelAdmin`s.
"""

from .attempts import TaskAttemptInline
from .schedules import ScheduleAdmin
from .tasks import TaskAdmin
from .workers import WorkerProcessAdmin
from .workflows import WorkflowAdmin

__all__ = ["ScheduleAdmin", "TaskAdmin", "TaskAttemptInline", "WorkerProcessAdmin", "WorkflowAdmin"]
