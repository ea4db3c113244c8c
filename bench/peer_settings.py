"""Settings for the peer queues measured by bench/run.py: the demo project with ONE peer installed.

`HORSIES_BENCH_PEER` picks it: "django-tasks-db", "procrastinate" or "celery". horsies_django itself is left
out so that each library runs against a database holding only its own tables. Only bench/run.py
(and the worker processes it starts) import this module; the test suite never does.
"""

import os

import django
from testproject.settings import *  # noqa: F403

PEER = os.environ.get("HORSIES_BENCH_PEER", "django-tasks-db")
DEBUG = False
INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("horsies_django", "shop")]  # noqa: F405

if PEER == "django-tasks-db":
    # Django 6 has django.tasks built in; before it, django-tasks-db runs on the django-tasks backport.
    INSTALLED_APPS += ([] if django.VERSION >= (6, 0) else ["django_tasks"]) + ["django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
elif PEER == "procrastinate":
    INSTALLED_APPS += ["procrastinate.contrib.django"]
    PROCRASTINATE_IMPORT_PATHS = ["bench.peers.procrastinate_tasks"]
    PROCRASTINATE_AUTODISCOVER_MODULE_NAME = ""
elif PEER == "celery":
    pass  # Celery keeps its queue in Redis; Django only runs the benchmark's child process
else:
    raise ValueError(f"HORSIES_BENCH_PEER must be 'django-tasks-db', 'procrastinate' or 'celery', got {PEER!r}")
