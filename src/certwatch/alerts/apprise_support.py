"""Load the optional Apprise package and build its plugins quietly.

Apprise 2.3.0 imports the `imghdr` module while it loads its plugins
(apprise/utils/pgp.py, for PGPy), and on Python 3.11 and 3.12 that import
raises a DeprecationWarning, which a warnings-as-errors run turns into a
failure. The warning is about Apprise's own import, so it is ignored here
and nowhere else.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import apprise

INSTALL_HINT = (
    "apprise: contacts need the optional Apprise package; install it with "
    "pip install 'certwatch[apprise]'"
)


def instantiate(
    url: str, asset: apprise.AppriseAsset | None = None
) -> apprise.plugins.NotifyBase | None:
    """Build the Apprise plugin for `url`, or return `None` when Apprise rejects it.

    Raises:
        ImportError: Apprise is not installed.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        import apprise

        return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
