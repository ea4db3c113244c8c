"""System checks: a bad `HORSIES` setting is reported by `manage.py check`, not at run time."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from .conf import SettingsError, parse


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    try:
        parse(getattr(settings, "HORSIES", None))
    except SettingsError as exc:
        return [Error(str(exc), hint=exc.hint, id=exc.check_id)]
    return []
