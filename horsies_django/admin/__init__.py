"""The operator's admin: the task list and detail, actions, the dashboard, the workers
and workflows pages.

Found by Django's admin autodiscovery; importing the modules registers their `ModelAdmin`s.
"""

from .attempts import TaskAttemptInline
from .links import DashboardLink, ErrorsLink
from .schedules import ScheduleAdmin
from .tasks import TaskAdmin
from .workers import WorkerProcessAdmin
from .workflows import WorkflowAdmin

__all__ = [
    "DashboardLink", "ErrorsLink", "ScheduleAdmin", "TaskAdmin", "TaskAttemptInline", "WorkerProcessAdmin",
    "WorkflowAdmin",
]  # fmt: skip
