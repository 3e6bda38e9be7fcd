"""Safe file reads and atomic writes: the one place the suite opens files it did not just make.

Reads refuse what is not a regular file and bound what they read, so that a FIFO, a device or
a symlink to /dev/zero named like a sidecar (`<run>.meta.json`) or a kernel table
(`<run>.kernels.json`) can neither hang nor exhaust a report:

    read_regular(Path("logs/m/r.meta.json"), max_bytes=1 << 20)  ->  b'{"run": ...}'

Writes go to a staged temporary file in the target's folder, then `os.replace` it: a reader
sees the old file or the new one, never half of one, and a write that fails (a full disk, a
folder where the file should be) removes what it staged before the error goes on:

    write_atomic(Path("assets/report.md"), text)             # one file
    with Staged() as staged:                                 # several, all or none
        staged.add(Path("gen/a.sh"), text_a, mode=0o755)
        staged.add(Path("gen/a.sbatch"), text_b, mode=0o755)
    # every file replaced when the block ends without error, none otherwise
    with Staged() as staged:                                 # a writer that takes a name
        write_jsonl(records, staged.reserve(Path("corpus.jsonl")))

Errors are `OSError` (with `errno`/`strerror`, e.g. ENOSPC for a full disk), `NotRegularFile`
or `TooLarge` (both OSErrors, in fp8suite.common.errors), so callers keep one `except OSError`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Optional, Union

from .errors import NotRegularFile, TooLarge

Data = Union[str, bytes]


def file_kind(mode: int) -> str:
    """'folder', 'FIFO', 'device', 'socket' or 'file' for an `st_mode`."""
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "file"


def read_regular(path: Union[str, Path], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` bytes.

    Opened non-blocking (a FIFO never blocks the open) and checked with fstat on the open
    descriptor (no race between the check and the read); symlinks are followed, so a link to
    /dev/zero is refused as a device. Raises FileNotFoundError, NotRegularFile, TooLarge or
    another OSError.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, file_kind(info.st_mode))
        if info.st_size > max_bytes:
            raise TooLarge(path, max_bytes)
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:  # the file grew after the fstat
            raise TooLarge(path, max_bytes)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_regular(path: Union[str, Path], max_bytes: int) -> str:
    """`read_regular` decoded as UTF-8, undecodable bytes replaced (U+FFFD)."""
    return read_regular(path, max_bytes).decode("utf-8", "replace")


def same_content(path: Path, data: Data, max_bytes: Optional[int] = None) -> bool:
    """Whether `path` is a regular file holding exactly `data` (False when missing, not a
    regular file or unreadable): never blocks on a FIFO."""
    want = data.encode("utf-8") if isinstance(data, str) else data
    try:
        return read_regular(path, max_bytes if max_bytes is not None else len(want)) == want
    except OSError:
        return False


class Staged:
    """Files written under temporary names beside their targets, renamed into place together
    when the `with` block ends without error (`commit`), removed otherwise (`discard`).

    A target that exists and is not a regular file (a FIFO, a folder) is refused when added
    (NotRegularFile): `os.replace` would otherwise write over a FIFO's name or fail late.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path]] = []

    def add(self, path: Path, data: Data, mode: Optional[int] = None) -> None:
        """Stage `data` (text as UTF-8) for `path`, with permission bits `mode` (default 0o644);
        OSError (ENOSPC on a full disk) after removing the partial file."""
        path = Path(path)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                raise NotRegularFile(path, file_kind(info.st_mode))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            try:
                write_all(fd, data.encode("utf-8") if isinstance(data, str) else data)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o644 if mode is None else mode)
        except BaseException:
            _remove(tmp)
            raise
        self._staged.append((tmp, path))

    def reserve(self, path: Path) -> Path:
        """An empty temporary file beside `path`, for a writer that takes a file name (a
        streamed JSONL, Megatron's dataset builder); renamed onto `path` at commit, removed
        on discard."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o644)
        self._staged.append((tmp, path))
        return Path(tmp)

    def commit(self) -> None:
        """Rename every staged file onto its target; on an error the rest are removed."""
        try:
            while self._staged:
                tmp, path = self._staged[0]
                os.replace(tmp, path)
                self._staged.pop(0)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove every staged file not yet renamed."""
        for tmp, _ in self._staged:
            _remove(tmp)
        self._staged.clear()

    def __len__(self) -> int:
        return len(self._staged)

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_atomic(path: Union[str, Path], data: Data, mode: Optional[int] = None) -> None:
    """Replace `path` with `data` atomically (see `Staged`); nothing is left behind on error."""
    with Staged() as staged:
        staged.add(Path(path), data, mode)


def probe_write(folder: Union[str, Path]) -> None:
    """Create and remove an empty file in `folder` (made if missing): OSError when that cannot be
    done (a read-only or full file system, no permission), so that a launch finds out before it
    starts, not when its first write fails."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.")
    os.close(fd)
    os.unlink(probe)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to the open descriptor `fd` (os.write may write fewer);
    OSError as the system gives it (ENOSPC on a full disk). Not fsynced: the rename keeps
    readers from ever seeing half a file, which is what the suite needs, and an fsync per
    status-file save (several a second in a queue) would slow the queue's timing."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
