"""The one way synthetic datasets reach the disk: written whole into a temporary folder beside
the target, marked complete with the settings that made them, then renamed into place.

A half-written dataset is therefore never visible under its real name, two processes that
write the same dataset at once both end with one complete copy, and a folder polyvision did
not write (no marker) is never replaced.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from polyvision.errors import ConfigError, DataError

MARKER_NAME = "COMPLETE"


def read_marker(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The settings recorded in a dataset folder's marker, or ``None`` without a readable one."""
    try:
        found = json.loads((Path(dataset_dir).expanduser() / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def marker_matches(dataset_dir: str | os.PathLike, wanted: dict[str, Any]) -> bool:
    """Whether the folder holds a complete dataset whose marker records every setting in ``wanted``."""
    found = read_marker(dataset_dir)
    return found is not None and all(found.get(key) == value for key, value in wanted.items())


def write_atomically(root: str | os.PathLike, dirname: str, settings: dict[str, Any],
                     write: Callable[[Path], dict[str, Any] | None]) -> Path:
    """Write the dataset ``root/dirname`` and return ``root``.

    ``write(dataset_dir)`` fills a fresh folder and may return extra facts for the marker
    (counts, split sizes); the marker holds ``settings`` plus those. An existing
    ``root/dirname`` is replaced only when it is an earlier synthetic dataset; when another
    process finished an identical one first, it is kept and this copy is dropped.
    """
    root = Path(root).expanduser()
    target = root / dirname
    if target.exists() and not (target / MARKER_NAME).exists() and any(target.iterdir()):
        raise DataError(target, "exists and is not a synthetic dataset written by polyvision "
                        f"(no {MARKER_NAME} marker); remove it or choose another directory")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}-tmp-", dir=root))
    trash: Path | None = None
    try:
        out = tmp / dirname
        out.mkdir()
        summary = write(out) or {}
        (out / MARKER_NAME).write_text(json.dumps({**settings, **summary}, indent=1))
        if target.exists():
            if marker_matches(target, settings):
                return root
            trash = root / f".{dirname}-old-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
        os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return root


def split_counts(value: int | Mapping[str, int] | None, default: Mapping[str, int],
                 setting: str = "num_images_per_split") -> dict[str, int]:
    """A synthetic writer's count per split: ``None`` -> ``default``, an int -> that many in
    every split of ``default``, a mapping -> ``default`` updated with it; unknown splits and
    counts below 1 are a ``ConfigError`` naming ``setting``."""
    splits = tuple(default)
    if value is None:
        counts = dict(default)
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(splits))
        if unknown:
            raise ConfigError(f"{setting}: unknown split(s) {', '.join(unknown)}; use {', '.join(splits)}")
        counts = {**default, **{k: int(v) for k, v in value.items()}}
    else:
        counts = {split: int(value) for split in splits}
    if any(v < 1 for v in counts.values()):
        raise ConfigError(f"{setting} must be >= 1 per split, got {counts}")
    return counts
