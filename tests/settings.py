"""Test settings: the demo project plus an app of tasks written to exercise every outcome."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.taskapp"]  # noqa: F405

HORSIES = {
    "QUEUES": {"standard": {"priority": 50}},
    "WORKER": {"poll_interval_s": 0.05},
}
