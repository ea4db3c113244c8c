"""Test settings where the task app's queues are not all listed: `horsies_django.E011` must stop the worker."""

from tests.settings import *  # noqa: F403

HORSIES = {"QUEUES": {"default": {}}}
