"""The exceptions raised by the alert delivery package."""

from __future__ import annotations

from certwatch.errors import CertwatchError


class ContactError(CertwatchError, ValueError):
    """A contact text that is not a valid email address or webhook URL."""


class DeliverySettingsError(CertwatchError, ValueError):
    """A delivery setting, from the environment or the config file, that is invalid."""
