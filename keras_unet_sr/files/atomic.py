"""Atomic writes: a file or folder appears complete, or not at all.

Every write site of the package goes through `atomic_path`: the content is
written under a hidden temporary name in the destination's folder, then
renamed over the destination in one step. A crash, a kill or a full disk
leaves the old file (or nothing) and no half-written one; the temporary is
removed on failure. Files get the user's umask like any other file (a
`mkstemp` file would be 0600), and the temporary name is short whatever the
destination's name, so a 255-character output name still works.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keras_unet_sr.errors import UserError

# Hidden, and recognizable: readers of a folder (e.g. the bundle version
# scanner) skip names starting with this.
TEMP_PREFIX = ".tmp-"


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that keeps its suffix (Keras checks `.keras`)."""
    suffix = "".join(path.suffixes[-2:])[:32] if path.suffix else ""
    return path.with_name(f"{TEMP_PREFIX}{os.urandom(6).hex()}{suffix}")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, folder: bool = False, replace: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; publish it on success.

    Args:
        path: The destination file or folder; its parent folder must exist.
        folder: The content is a folder (created empty before the yield, with
            the user's umask); otherwise a file the caller creates.
        replace: Replace an existing destination. Without it, an existing
            destination raises `FileExistsError` and nothing is published.

    Raises:
        FileExistsError: `replace=False` and `path` exists.
        OSError: the write or the rename failed (the temporary is removed).
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        if folder:
            tmp.mkdir()
        yield tmp
        _publish(tmp, path, folder, replace)
    except BaseException as error:
        _remove(tmp)
        reason = no_room_reason(error, path.parent)
        if reason:  # one line naming the file, not a library's traceback
            raise UserError(f"{path}: cannot be written: {reason}") from error
        raise


# errno values of a disk that cannot take more: full, over quota, read-only.
_NO_ROOM = {errno.ENOSPC: "no space left on the disk", errno.EROFS: "read-only"}
_NO_ROOM[getattr(errno, "EDQUOT", 122)] = "disk quota exceeded"
_NEARLY_FULL = 1 << 20  # bytes left on a disk that a write just failed on
_NO_ROOM_TEXT = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": getattr(errno, "EDQUOT", 122),
    "Read-only file system": errno.EROFS,
}


def ensure_room(path: str | os.PathLike, needed: int) -> None:
    """Refuse a write of about `needed` bytes to `path` that the disk cannot
    take, before it starts: h5py, out of space in the middle of a file, can
    crash the process instead of raising."""
    path = Path(path)
    try:
        disk = os.statvfs(path.parent)
    except OSError:
        return  # the write itself will say what is wrong
    free = disk.f_bavail * disk.f_frsize
    if free < needed:
        raise UserError(
            f"{path}: cannot be written: no space left on the disk (about "
            f"{needed >> 10} KiB needed, {free >> 10} KiB free)"
        )


def no_room_reason(error: BaseException, folder: Path | None = None) -> str | None:
    """Why a write failed, when the disk cannot take it (full, over quota,
    read-only), whether the error carries the errno (OSError) or only its
    text (h5py's and TensorFlow's own errors), or, for an error that says
    neither (a library's short write), when `folder`'s file system is full or
    read-only now."""
    code = getattr(error, "errno", None)
    if code in _NO_ROOM:
        return _NO_ROOM[code]
    text = str(error)
    for message, code in _NO_ROOM_TEXT.items():
        if message in text or f"errno = {code}," in text:
            return _NO_ROOM[code]
    if folder is not None and isinstance(error, OSError):
        try:
            disk = os.statvfs(folder)
        except OSError:
            return None
        if disk.f_flag & os.ST_RDONLY:
            return _NO_ROOM[errno.EROFS]
        if disk.f_bavail * disk.f_frsize < _NEARLY_FULL:
            return _NO_ROOM[errno.ENOSPC]
    return None


def _publish(tmp: Path, path: Path, folder: bool, replace: bool) -> None:
    if not replace:
        if path.exists():
            raise FileExistsError(f"{path}: exists")
        # rename() of a folder onto a non-empty folder fails, onto a file
        # it may not: a lost race is reported either way.
        os.rename(tmp, path)
        return
    if not folder or not path.exists():
        os.replace(tmp, path)
        return
    # A folder cannot be replaced in one rename: move the old one aside
    # first (the destination is briefly absent, never half-written).
    old = temporary_name(path)
    os.rename(path, old)
    os.rename(tmp, path)
    _remove(old)


def remove_leftovers(folder: str | os.PathLike) -> None:
    """Delete the temporaries a killed writer left in `folder`.

    Only for a folder the caller owns (no other writer is running there): a
    SIGKILL skips the clean-up of `atomic_path`, so its temporary stays.
    """
    folder = Path(folder)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil  # not at import: the CLI's start-up pays for every module

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write a JSON file atomically, indented, ending with a newline."""
    return write_text(path, json.dumps(value, indent=2) + "\n")
