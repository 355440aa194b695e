"""Writing files so that nothing already written is lost or half-written, and one writer per folder.

``atomic_path`` hands out a temporary name beside the target and renames it over the target
only when the write succeeded; ``FolderLock`` keeps a second process out of a run or corpus
folder while the first one writes there.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from pathlib import Path

from composer import ComposerError

TEMPORARY_MARK = ".tmp"


class atomic_path:
    """Context manager yielding a temporary path in the target's folder; renamed on success."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh name, not a file: the writer creates it with the usual permissions (mkstemp's are 0600)
        self.tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(6)}{TEMPORARY_MARK}{self.path.suffix}"
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def remove_leftovers(folder: Path) -> list[Path]:
    """Temporary files a killed writer left behind (never renamed, so never anyone's data)."""
    removed = []
    if folder.is_dir():
        for path in folder.glob(f".*{TEMPORARY_MARK}*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class FolderLock:
    """An exclusive lock on ``folder/.lock`` held for the life of the ``with`` block.

    ``flock`` is released by the kernel when the holder dies, so a killed process never leaves
    a stale lock; the file records the holder's PID for the message the second process prints.
    """

    def __init__(self, folder: Path, what: str):
        self.folder, self.what = Path(folder), what
        self.handle = None

    def __enter__(self) -> "FolderLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise ComposerError(f"{self.folder}: is a file, not a folder; choose another --out")
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ".lock"
        self.handle = open(path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise ComposerError(
                f"{self.folder}: {self.what} already in progress by process {holder}; wait for it or choose another --out"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            if exc_type is not None and self.created:
                # a command that failed before writing anything leaves no empty folder behind
                (self.folder / ".lock").unlink(missing_ok=True)
                try:
                    self.folder.rmdir()
                except OSError:
                    pass  # it holds something after all: keep it
