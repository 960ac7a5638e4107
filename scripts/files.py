"""Output files that never replace another run's: exclusive creation with a numbered fallback."""
from __future__ import annotations

import os
from pathlib import Path


def unique_file(path: Path) -> Path:
    """Create ``path``, or ``<stem>-2<suffix>``, ``-3``, ... if it exists (exclusive create:
    never another run's file) and return the one created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    counter = 1
    while True:
        candidate = path if counter == 1 else path.with_name(f"{path.stem}-{counter}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return candidate
        except FileExistsError:
            counter += 1
