"""Output folders: refused early with one clear line, created when needed."""

from __future__ import annotations

import os
from pathlib import Path

from keras_unet_sr.errors import UserError


def check_can_create(folder: str | os.PathLike) -> Path:
    """Fail now, before any work, if `folder` cannot be created or written.

    Checks the nearest existing ancestor, so nothing is created yet.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: --out exists and is not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{existing}: is a file, so {folder} cannot be created")
    if not os.access(existing, os.W_OK):
        raise UserError(f"{existing}: not writable, so {folder} cannot be written")
    return folder


def make_output_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` (and parents) if needed; it must end up writable."""
    folder = check_can_create(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"{folder}: cannot create output folder ({error.strerror})"
        ) from error
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: output folder is not writable")
    return folder
