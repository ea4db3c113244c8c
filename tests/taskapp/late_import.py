"""A module with a send at module level that autodiscovery does not import: whoever imports it
after Django has started sends for real (tests/integration/test_horsies_compat.py)."""

from .tasks import add

SENT = add.send(7)
