"""Throttling of failed sign-ins: per username and per client, in a sliding window.

After USERNAME_LIMIT failures for a username, or CLIENT_LIMIT from a client (its IP
address), within WINDOW seconds, further attempts are refused with the seconds until
the oldest of those failures leaves the window; a refused attempt verifies nothing
and records nothing. A successful sign-in forgets its username's failures (not its
client's: one client guessing many names stays throttled).

An attempt is counted as a failure when it starts (`attempt`, which checks and
counts in one step), not when its hash has been found wrong 0.18 s later: else
every guess sent at the same moment would pass the check before any had failed,
and a burst of them would get as many hashes as the server has threads. A
successful sign-in takes its count back (`succeeded`).

Memory is bounded: each key keeps at most its limit of timestamps, and at most
MAX_KEYS keys are kept (the least recently failed are forgotten first). The counts
live in one process: each web process of a distributed deployment throttles on its
own, so N processes allow up to N times the limits.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from bankaccounts.exceptions import SignInThrottledError

if TYPE_CHECKING:
    from collections.abc import Callable

WINDOW = 15 * 60.0
USERNAME_LIMIT = 5
CLIENT_LIMIT = 20
MAX_KEYS = 10_000


class SlidingWindow:
    """Failures per key in the last `window` seconds, at most `limit` remembered."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Allows `limit` failures per key within `window` seconds."""
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Seconds until the key may be tried again; 0 if it may be now."""
        now = self.clock()
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return 0
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[key]
                return 0
            if len(failures) < self.limit:
                return 0
            return max(1, math.ceil(failures[0] + self.window - now))

    def fail(self, key: str) -> None:
        """Records a failure of the key, now."""
        now = self.clock()
        with self._lock:
            failures = self._failures.pop(key, None)
            if failures is None:
                failures = deque(maxlen=self.limit)
            failures.append(now)
            self._failures[key] = failures  # the most recent, last
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def forget_one(self, key: str) -> None:
        """Forgets the key's most recent failure (an attempt that succeeded)."""
        with self._lock:
            failures = self._failures.get(key)
            if failures:
                failures.pop()
                if not failures:
                    del self._failures[key]

    def clear(self, key: str) -> None:
        """Forgets the key's failures."""
        with self._lock:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        """The number of keys remembered."""
        return len(self._failures)


class SignInThrottle:
    """Failed sign-ins per username and per client."""

    def __init__(
        self,
        username_limit: int = USERNAME_LIMIT,
        client_limit: int = CLIENT_LIMIT,
        window: float = WINDOW,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The limits within one window of seconds."""
        self.usernames = SlidingWindow(
            username_limit, window, max_keys=max_keys, clock=clock
        )
        self.clients = SlidingWindow(
            client_limit, window, max_keys=max_keys, clock=clock
        )
        self._lock = threading.Lock()

    def check(self, username: str, client: str) -> None:
        """Raises SignInThrottledError if the username or the client must wait."""
        wait = max(
            self.usernames.retry_after(username), self.clients.retry_after(client)
        )
        if wait:
            raise SignInThrottledError(wait)

    def attempt(self, username: str, client: str) -> None:
        """Checks and counts an attempt as a failure, in one step: raises
        SignInThrottledError (counting nothing) if the username or client must wait.

        A sign-in that then succeeds calls `succeeded(username, client)`.
        """
        with self._lock:
            self.check(username, client)
            self.failed(username, client)

    def failed(self, username: str, client: str) -> None:
        """Counts a failed sign-in against both."""
        self.usernames.fail(username)
        self.clients.fail(client)

    def succeeded(self, username: str, client: str | None = None) -> None:
        """Forgets the username's failures, and the client's attempt (if given)."""
        self.usernames.clear(username)
        if client is not None:
            self.clients.forget_one(client)
