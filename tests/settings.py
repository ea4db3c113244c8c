"""Test settings: the demo project plus an app of tasks written to exercise every outcome."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.taskapp"]  # noqa: F405

# Short heartbeats and leases so that crash recovery happens within a test's patience.
HORSIES = {
    "QUEUES": {"standard": {"priority": 50}},
    "WORKER": {
        "poll_interval_s": 0.05,
        "heartbeat_s": env.float("HORSIES_TEST_HEARTBEAT_S", default=0.25),  # noqa: F405
        "lease_s": env.float("HORSIES_TEST_LEASE_S", default=2.0),  # noqa: F405
        "max_crash_reruns": 2,
    },
}
