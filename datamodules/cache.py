"""Where polyvision keeps what it generates or caches (synthetic datasets, STATE's cube caches).

``cache_dir(*parts)`` is the one place the location is decided, read when a datamodule is
built: ``$POLYVISION_CACHE`` if set, else ``$XDG_CACHE_HOME/polyvision``, else
``~/.cache/polyvision``; ``parts`` are joined below it. Datamodules take ``cache_dir: null``
(or leave it out) to mean this default.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The polyvision cache folder (``parts`` joined below it), ``~`` expanded; nothing is created."""
    own = os.environ.get("POLYVISION_CACHE")
    if own:
        base = Path(own).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        # the XDG spec ignores relative paths
        base = (Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute()
                else Path("~/.cache").expanduser()) / "polyvision"
    return base.joinpath(*parts)


def resolve_cache_dir(value: str | os.PathLike | None, *default_parts: str) -> Path:
    """``value`` with ``~`` expanded, or ``cache_dir(*default_parts)`` when it is None."""
    return Path(value).expanduser() if value is not None else cache_dir(*default_parts)
