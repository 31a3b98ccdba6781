"""The app served by a real uvicorn, in a thread of the test's process, for the browser tests."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from fenqi.api.app import create_app
from fenqi.cli.serve import listening_socket


@contextmanager
def serving(url: str) -> Iterator[str]:
    """The app on ``url``'s database, served on a free port until the block ends; yields its
    base address."""
    listening = listening_socket("127.0.0.1", 0)  # TCP_NODELAY, as `fenqi serve` has it
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(url), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server stopped before it started"
        assert time.monotonic() < deadline, "the server did not start in 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
