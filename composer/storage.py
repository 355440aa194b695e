"""Writing files so that nothing already written is lost or half-written, and one writer per folder.

``atomic_path`` hands out a temporary name beside the target and renames it over the target
only when the write succeeded; ``write_together`` does the same for several files that only
make sense together; ``FolderLock`` keeps a second process out of a run or corpus folder while
the first one writes there; ``claim_folder`` and ``building_folder`` give each process a folder
of its own to build a page in, and ``remove_abandoned`` clears those of killed processes.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

from composer import ComposerError

TEMPORARY_MARK = ".tmp"
BUILDING_MARK = ".building-"  # .NAME.building-HOST-PID-TOKEN: a folder being built, and its owner


LONGEST_STEM = 100  # bytes of a name taken from a user's file: a written name stays under 255 with the prefixes and temporaries


def readable(name: str) -> str:
    """A name as text that prints and draws: bytes of a non-UTF-8 file name (held by Python as
    surrogate escapes) become replacement characters."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def safe_stem(name: str, longest: int = LONGEST_STEM) -> str:
    """A piece or primer name as part of a file name: letters, digits, '.', '-' and '_' only,
    at most ``longest`` bytes; a shortened name ends in a hash of the whole one, so two long
    names that begin alike still give two files."""
    stem = re.sub(r"[^\w.\-]+", "_", readable(name)).strip("._") or "piece"
    if len(stem.encode()) <= longest:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    cut = stem.encode()[: longest - 9].decode("utf-8", "ignore")
    return f"{cut}-{digest}"


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that ``remove_leftovers`` recognizes. A name, not a
    file: the writer creates it with the usual permissions (mkstemp's are 0600)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_MARK}{path.suffix}"


class atomic_path:
    """Context manager yielding a temporary path in the target's folder; renamed on success."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_name(self.path)
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


def write_together(contents: dict[Path, bytes]) -> list[Path]:
    """Write several files as one unit: all of them under temporary names first, then all
    renamed in the order given (the last is the one a reader checks the others against). A
    failure while writing, such as a full disk, leaves every target as it was."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in contents.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            staged.append((temporary_name(path), path))
            staged[-1][0].write_bytes(data)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    return list(contents)


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
    a stale lock; the file records the holder's PID and activity for the message the second
    process prints.
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
            pid, _, doing = self.handle.read(200).strip().partition(" ")
            self.handle.close()
            raise ComposerError(
                f"{self.folder}: {doing or 'in use'} by process {pid or '(unknown)'}, which holds it; "
                "wait for it or choose another --out"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()} {self.what}")  # the holder and what it does, for the refusal
        self.handle.flush()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            if exc_type is not None and self.created and [p.name for p in self.folder.iterdir()] == [".lock"]:
                # a command that failed before writing anything leaves no empty folder behind;
                # one that wrote something keeps its lock file, the sign that composer wrote there
                (self.folder / ".lock").unlink(missing_ok=True)
                try:
                    self.folder.rmdir()
                except OSError:
                    pass  # something appeared meanwhile: keep it


def claim_folder(parent: Path, name: str) -> Path:
    """A new, empty folder ``parent/name`` (``name-2``, ``name-3`` … when taken), made here:
    ``mkdir`` either creates it or fails, so two processes never claim the same one."""
    parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        path = parent / (name if number == 1 else f"{name}-{number}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def building_folder(target: Path) -> Path:
    """A hidden folder beside ``target`` for this process alone to build it in, named after
    its owner (host and process) so that ``remove_abandoned`` knows when the owner is gone."""
    path = target.parent / f".{target.name}{BUILDING_MARK}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


def publish(building: Path, target: Path) -> Path:
    """Rename a built folder onto its claimed (empty) target in one step; refused, in one
    line, if another process filled the target meanwhile."""
    try:
        os.rename(building, target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise ComposerError(f"{target}: another process wrote there meanwhile; choose a new or empty --out") from None
    return target


def remove_abandoned(folder: Path) -> list[Path]:
    """Building folders in ``folder`` whose owner process is gone (killed mid-build), each with
    the folder it had claimed if that is still empty; also the ``.NAME.building`` folders of
    older versions, which named no owner and claimed nothing. Folders of live processes and
    of other hosts are left alone."""
    removed = []
    for path in sorted(folder.glob(".*.building*")) if folder.is_dir() else []:
        claimed, mark, owner = path.name[1:].rpartition(BUILDING_MARK)
        if mark and path.is_dir() and owner_gone(owner):
            shutil.rmtree(path, ignore_errors=True)
            try:
                (folder / claimed).rmdir()
            except OSError:
                pass  # not empty (a page after all) or already gone: not an abandoned claim
        elif path.name.endswith(".building") and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(path)
    return removed


def owner_gone(owner: str) -> bool:
    """Whether the process a building folder names (HOST-PID-TOKEN) has ended; never for a
    process of another host, which this one cannot see."""
    parts = owner.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit() or int(parts[1]) < 1:
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
