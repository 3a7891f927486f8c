"""Connection limits uvicorn does not have: head/body read timeouts and connection caps that evict idle ones.

Stock uvicorn lets a connection that never finishes its request head (or never sends
anything, or trickles its body) stay open forever, and its ``limit_concurrency`` counts
those connections, so 63 idle sockets made every request, ``/health`` included, an
HTTP 503. :func:`guarded_protocol` returns uvicorn's httptools protocol with:

* ``header_timeout_s``: a new connection, and a kept-alive one once it starts a new
  request, must deliver the whole request head within this time, else it is closed;
* ``body_timeout_s``: once the head is in, the whole body within this time (the app
  answers 408 at that point; this is the backstop for routes that do not read bodies);
* ``max_connections_per_client`` (by client address) and ``max_connections`` (all):
  at a cap, the connection idle the longest (no request in progress: fresh, slow head
  or kept alive) is closed to make room; only when every connection is busy with a
  request is the new one refused (HTTP 503, a protocol JSON body).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mobilenetv3_tipc.serving.protocol import CLOSED_ERROR, response

logger = logging.getLogger(__name__)

BODY_BACKSTOP_S = 5.0  # after body_timeout_s: the app answers first, the connection is closed after this


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 512
    max_connections_per_client: int = 64


class ConnectionGuard:
    """The open connections of one server, by client address, and the caps on them (event-loop thread only)."""

    def __init__(self, limits: ConnectionLimits, on_close: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.on_close = on_close or (lambda reason: None)
        self._all: dict[Any, None] = {}  # insertion-ordered set
        self._by_client: dict[str, dict[Any, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, conn: Any) -> bool:
        """Register a new connection, evicting an idle one at a cap; False: refuse it (every one is busy)."""
        host = conn.client[0] if conn.client else ""
        peers = self._by_client.setdefault(host, {})
        if len(peers) >= self.limits.max_connections_per_client and not self._evict(peers):
            return False
        if len(self._all) >= self.limits.max_connections and not self._evict(self._all):
            return False
        peers[conn] = None
        self._all[conn] = None
        return True

    def release(self, conn: Any) -> None:
        self._all.pop(conn, None)
        host = conn.client[0] if conn.client else ""
        peers = self._by_client.get(host)
        if peers is not None:
            peers.pop(conn, None)
            if not peers:
                del self._by_client[host]

    def _evict(self, candidates: dict[Any, None]) -> bool:
        idle = [c for c in candidates if not c.busy]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_active)
        self.release(victim)
        victim.close_for("evicted_idle")
        return True


def _refusal() -> bytes:
    body = json.dumps(response(CLOSED_ERROR, "too many connections: every connection slot is busy with a request "
                                             "(max_connections / max_connections_per_client); retry later")).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


def guarded_protocol(guard: ConnectionGuard) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``guard``'s timeouts and caps (pass it as ``uvicorn.Config(http=...)``)."""
    limits = guard.limits

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        last_active = 0.0
        _timer: asyncio.TimerHandle | None = None

        @property
        def busy(self) -> bool:
            """A request in progress or pipelined behind one: not a connection to evict."""
            return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.last_active = self.loop.time()
            if not guard.admit(self):
                guard.on_close("refused")
                transport.write(_refusal())
                transport.close()
                return
            self._arm(limits.header_timeout_s, "header_timeout")

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self)
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.last_active = self.loop.time()
            if self._timer is None:  # a kept-alive connection starts its next request
                self._arm(limits.header_timeout_s, "header_timeout")

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(limits.body_timeout_s + BODY_BACKSTOP_S, "body_timeout")

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def on_response_complete(self) -> None:
            self.last_active = self.loop.time()
            super().on_response_complete()

        def close_for(self, reason: str) -> None:
            self._disarm()
            if not self.transport.is_closing():
                guard.on_close(reason)
                self.transport.close()

        def _arm(self, seconds: float, reason: str) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired, reason)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self, reason: str) -> None:
            self._timer = None
            if reason == "header_timeout" and self.busy:
                return
            logger.debug("closing connection from %s: %s", self.client, reason)
            self.close_for(reason)

    return GuardedHttpToolsProtocol
