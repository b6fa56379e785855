"""Failed logins slow down, then lock out, per client address (ASGI middleware around the chat's app).

Each failed `POST /login` from an address waits `delay_s` × the failures so far (at most 2 s) before its
answer; after `max_failures` in a row the address gets HTTP 429 for `lockout_s` seconds, whatever it
sends. A successful login clears the address's count. The address is the TCP peer: behind a reverse
proxy, every client shares the proxy's.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

MAX_FAILURES = 5
LOCKOUT_S = 60.0
DELAY_S = 0.5


class LoginLimit:
    def __init__(self, app, max_failures: int = MAX_FAILURES, lockout_s: float = LOCKOUT_S,
                 delay_s: float = DELAY_S, clock=time.monotonic) -> None:
        self.app, self.max_failures, self.lockout_s, self.delay_s, self.clock = \
            app, max_failures, lockout_s, delay_s, clock
        self.failures: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}
        self.lock = threading.Lock()

    def locked_for(self, client: str) -> float:
        """Seconds `client` is still locked out (0 when it may try)."""
        with self.lock:
            left = self.locked_until.get(client, 0.0) - self.clock()
            if left <= 0 and client in self.locked_until:
                del self.locked_until[client]
                self.failures.pop(client, None)
            return max(left, 0.0)

    def record(self, client: str, ok: bool) -> int:
        """Count a login outcome; returns the failures in a row (locking the client at the limit)."""
        with self.lock:
            if ok:
                self.failures.pop(client, None)
                return 0
            n = self.failures[client] = self.failures.get(client, 0) + 1
            if n >= self.max_failures:
                self.locked_until[client] = self.clock() + self.lockout_s
            return n

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        left = self.locked_for(client)
        if left:
            await _refuse(send, left)
            return
        status: list[int] = []
        held: list[dict] = []

        async def capture(message) -> None:  # hold the answer until the outcome is counted
            if message["type"] == "http.response.start":
                status.append(message["status"])
            held.append(message)

        await self.app(scope, receive, capture)
        failed = bool(status) and status[0] >= 400
        n = self.record(client, ok=bool(status) and status[0] < 300)
        if failed:
            await asyncio.sleep(min(self.delay_s * n, 2.0))
        for message in held:
            await send(message)


async def _refuse(send, left: float) -> None:
    body = json.dumps({"detail": f"Too many failed logins from this address; try again in {left:.0f} s."}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(left) + 1).encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
