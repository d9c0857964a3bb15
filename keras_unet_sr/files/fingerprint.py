"""Content fingerprints of input folders, cheap to recompute.

Prepared data sets are cached under a name derived from their input files,
so the name must change whenever a file's content does: a file rewritten with
the same size and modification time, or a `low/` that is a link to another
folder, must not bring back the old prepared set. Each file's content digest
(BLAKE2b) is cached by its real path, size, modification and change times
and inode; `st_ctime` changes on every write and cannot be set back by
`touch`, so a cache hit means the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from keras_unet_sr.files.atomic import write_json

_CHUNK = 1 << 22


def cache_file() -> Path:
    """Where file digests are remembered (`$XDG_CACHE_HOME` or `~/.cache`)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(root) / "keras-unet-sr" / "digests.json"


def _key(path: str, stat: os.stat_result) -> str:
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def _digest(path: str) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def walk_files(root: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files under `root` that `keep` accepts, following links to folders
    (each real folder once, so a link loop ends), sorted."""
    seen: set[str] = set()
    found = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        found.extend(
            Path(folder) / name
            for name in names
            if keep(Path(folder) / name) and os.path.isfile(Path(folder) / name)
        )
    return sorted(found)


def fingerprint(root: Path, files: Iterable[Path]) -> str:
    """A digest of the files' names (relative to `root`) and contents."""
    try:
        cache = json.loads(cache_file().read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    entries, changed = [], False
    for path in files:
        real = os.path.realpath(path)
        key = _key(real, os.stat(real))
        if key not in cache:
            cache[key] = _digest(real)
            changed = True
        entries.append((str(path.relative_to(root)), cache[key]))
    if changed:  # a cache that cannot be written only costs time
        with contextlib.suppress(OSError):
            cache_file().parent.mkdir(parents=True, exist_ok=True)
            write_json(cache_file(), cache)
    return hashlib.blake2b(repr(entries).encode(), digest_size=8).hexdigest()
