"""Test settings: the demo project plus an app of tasks written to exercise every outcome."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.taskapp"]  # noqa: F405

# Short heartbeats and leases so that crash recovery happens within a test's patience.
HORSIES = {
    # Once QUEUES is set only its queues exist; the tests use these.
    "QUEUES": {
        "default": {},
        "standard": {"priority": 50},
        "critical": {"priority": 1},
        "reports": {},
        # Capped only where a test asks for it, so other tests use the uncapped claim.
        "bulk": {"priority": 100, "max_concurrency": env.int("HORSIES_TEST_BULK_CAP", default=None)},  # noqa: F405
    },
    "WORKER": {
        "poll_interval_s": 0.05,
        "heartbeat_s": env.float("HORSIES_TEST_HEARTBEAT_S", default=0.25),  # noqa: F405
        "lease_s": env.float("HORSIES_TEST_LEASE_S", default=2.0),  # noqa: F405
        "max_crash_reruns": 2,
    },
}

# Schedules for worker subprocesses, as JSON (tests/integration/test_schedules.py sets it; others leave it empty).
HORSIES["SCHEDULES"] = env.json("HORSIES_TEST_SCHEDULES", default={})  # noqa: F405

# tests/integration/test_pgbouncer.py runs subprocesses whose DATABASE_URL goes through a PgBouncer in
# transaction mode, with the direct URL beside it for LISTEN ("direct") or no LISTEN at all ("poll").
if env.str("HORSIES_TEST_DIRECT_URL", default=""):  # noqa: F405
    # PgBouncer before 1.21 keeps no prepared statements across transactions; psycopg prepares none.
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": None}  # noqa: F405
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True  # noqa: F405
    DATABASES["direct"] = env.db_url_config(env.str("HORSIES_TEST_DIRECT_URL"))  # noqa: F405
    if env.str("HORSIES_TEST_LISTEN", default="poll") == "direct":  # noqa: F405
        HORSIES["LISTEN_DATABASE"] = "direct"
    else:
        HORSIES["POLL_ONLY"] = True
# django.tasks (Django 6) or the django-tasks backport (Django 5.2): tests/djtaskapp's tasks run on
# "default" (horsies_django) and, for comparison, on Django's own immediate backend.
import importlib.util  # noqa: E402

_TASKS_PACKAGE = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
_IMMEDIATE = f"{_TASKS_PACKAGE}.backends.immediate.ImmediateBackend"
INSTALLED_APPS = [*INSTALLED_APPS, "tests.djtaskapp"]
TASKS = {
    "default": {"BACKEND": "horsies_django.backends.HorsiesBackend", "QUEUES": ["default", "standard", "critical"]},
    "immediate": {"BACKEND": _IMMEDIATE, "QUEUES": []},
}
