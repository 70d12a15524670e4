"""Slow request headers (slowloris): a hook in uvicorn's httptools protocol that closes a connection
whose headers do not arrive in time; the API guard (personaflow/serving/guard.py) handles slow bodies."""

from __future__ import annotations


def install_header_timeout(seconds: float) -> bool:
    """Close a connection whose request headers are not complete within `seconds` of its first byte
    (or of the connection, for one that sends nothing). uvicorn has no such timeout, and no ASGI
    middleware can see a request before its headers are in, so this hooks uvicorn's httptools protocol
    (the one BentoML's uvicorn uses here); idle keep-alive connections stay uvicorn's business
    (`timeout_keep_alive`). Idempotent; False when the httptools protocol is not available."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Protocol
    except ImportError:  # pragma: no cover - httptools is in the lock
        return False
    if getattr(Protocol, "_personaflow_header_timeout", None) is not None:
        Protocol._personaflow_header_timeout = seconds
        return True
    Protocol._personaflow_header_timeout = seconds
    made, begin, complete, lost = (
        Protocol.connection_made,
        Protocol.on_message_begin,
        Protocol.on_headers_complete,
        Protocol.connection_lost,
    )

    def disarm(self) -> None:
        timer = self.__dict__.pop("_personaflow_header_timer", None)
        if timer is not None:
            timer.cancel()

    def expire(self) -> None:
        self.__dict__.pop("_personaflow_header_timer", None)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def arm(self) -> None:
        disarm(self)
        timeout = Protocol._personaflow_header_timeout
        self._personaflow_header_timer = self.loop.call_later(timeout, expire, self)

    def connection_made(self, transport) -> None:
        made(self, transport)
        arm(self)

    def on_message_begin(self) -> None:
        begin(self)
        arm(self)

    def on_headers_complete(self) -> None:
        disarm(self)
        complete(self)

    def connection_lost(self, exc) -> None:
        disarm(self)
        lost(self, exc)

    Protocol.connection_made = connection_made
    Protocol.on_message_begin = on_message_begin
    Protocol.on_headers_complete = on_headers_complete
    Protocol.connection_lost = connection_lost
    return True
