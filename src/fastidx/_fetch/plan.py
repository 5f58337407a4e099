"""What to do with one file, decided from what is known about it (no I/O here).

Like pooch's ``download_action``: the caller observes, this module decides, the caller acts.

>>> action(Local.DAMAGED, can_download=False)
'set_aside'
>>> action(Local.MISSING, can_download=True)
'download'
"""

from __future__ import annotations

import enum


class Local(enum.Enum):
    """What the cache holds for a file."""

    VOUCHED = "vouched"  # the manifest's record matches its stat: verified, unchanged since
    GENUINE = "genuine"  # hashed now: the official file
    DAMAGED = "damaged"  # hashed now: not the official file
    MISSING = "missing"


#: The actions :func:`action` returns.
ACTIONS = ("use", "download", "repair", "set_aside", "not_found")


def action(local: Local, *, can_download: bool) -> str:
    """The action for a file in state ``local``.

    ``use`` it; ``download`` it (or take it from another tool's cache first); ``repair``: delete
    the damaged copy, then download; ``set_aside``: move the damaged copy to ``<name>.damaged``
    because it cannot be downloaded again (offline); ``not_found``: missing and nothing can fetch it.
    """
    if local in (Local.VOUCHED, Local.GENUINE):
        return "use"
    if local is Local.DAMAGED:
        return "repair" if can_download else "set_aside"
    return "download" if can_download else "not_found"
