"""Real servers for tests: uvicorn on a free loopback port, in the test's event loop."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp


def listening_socket(port: int = 0) -> socket.socket:
    """A loopback socket on `port` (0: a free one)."""
    # IPPROTO_TCP: asyncio then turns Nagle off on accepted connections (else ~40 ms a response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if port:  # a port given again soon after a stop: its closed connections are no conflict
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket) -> AsyncIterator[str]:
    """Serves `app` with uvicorn on `sock`, in this event loop, until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            # As `kassa api`: the gateway reads X-Forwarded-For itself (KASSA_TRUSTED_PROXIES).
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
