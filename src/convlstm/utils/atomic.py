"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

#: Temporary files are ".<target name>.<random>.tmp" beside their target.
TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; on success it is fsynced and renamed over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty temporary directory beside ``target`` (a folder such as a zarr store); on success it is
    renamed to ``target``, and a ``target`` already there is first moved aside and then deleted.

    A reader sees the old directory or the new one complete, never a partial one (for the instant between the two
    renames, none at all: a directory cannot be renamed over another that is not empty).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private (0700)
    old: Path | None = None
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:  # put the old one back
                os.replace(old / target.name, target)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_with(target: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Runs ``write(path)`` on a temporary path and moves the result to ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Deletes the temporary files that `atomic_path` left under ``directory`` when its process was killed
    mid-write (their targets are intact), and the folders that
    [`atomic_directory`][convlstm.utils.atomic.atomic_directory] left; returns them. Call it only while nothing
    writes there."""
    removed = []
    for path in sorted(Path(directory).rglob(f".*{TEMPORARY_SUFFIX}")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
