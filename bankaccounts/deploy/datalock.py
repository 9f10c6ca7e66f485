"""One server per data directory: an exclusive lock held for the process's life.

Two embedded servers on the same SQLite files would each run the whole system, race
for the same tracking positions and diverge silently. The server takes an flock on
`bankaccounts.lock` in the data directory before it opens anything, and keeps it
until the process ends. The kernel releases it whatever the ending (a clean exit, a
crash, SIGKILL), so a stale lock file never keeps a server from starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE_NAME = "bankaccounts.lock"


class DataDirectoryInUseError(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, directory: Path, holder: str) -> None:
        """Names the directory and the process holding it, if known."""
        who = f"another process (pid {holder})" if holder else "another process"
        super().__init__(
            f"the data directory {directory} is in use by {who}: one server per "
            "data directory; stop that one, or give this one another --data-dir"
        )
        self.directory = directory
        self.holder = holder


class DataDirectoryLock:
    """An exclusive, non-blocking flock on the data directory's lock file."""

    def __init__(self, directory: str | Path) -> None:
        """The lock of that directory (made if missing); acquire() takes it."""
        self.directory = Path(directory).resolve()
        self.path = self.directory / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises DataDirectoryInUseError at once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # Not inherited by child processes (Python's default), so only this
        # process holds it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirectoryInUseError(self.directory, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder's pid, for the message another server gives.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Lets go of the lock (the process's end does the same)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
