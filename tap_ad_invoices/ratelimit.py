"""Client-side token buckets, so a 429 is the exception rather than the rule."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until a token is free (0 when one is free now)."""
        with self._lock:
            self._refill()
            return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def available(self) -> float:
        """Tokens in the bucket now: calls that can go out at once."""
        with self._lock:
            self._refill()
            return self._tokens

    def acquire(self) -> float:
        """Take one token, sleeping until one is free. Returns the seconds slept."""
        slept = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return slept
                delay = (1 - self._tokens) / self.rate
            self._sleep(delay)
            slept += delay

    def drain(self) -> None:
        """The server said 429: our idea of the bucket was too generous."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)

    def set_rate(self, rate: float) -> None:
        """Follow the rate the server announces (x-amzn-RateLimit-Limit)."""
        if rate > 0:
            with self._lock:
                self._refill()
                self.rate = rate
