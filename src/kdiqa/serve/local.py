"""Running the service in a background thread on the loopback interface (tests, benchmarks, screenshots).

Example:
    >>> import kdiqa, urllib.request, json
    >>> from kdiqa.predict import TorchBackend
    >>> from kdiqa.serve import create_app
    >>> app = create_app(TorchBackend(kdiqa.create_model("iqa_test_tiny")))
    >>> with serve_in_thread(app) as url:
    ...     json.load(urllib.request.urlopen(url + "/healthz"))["status"]
    'ok'
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int | None = None, startup_s: float = 30.0):
    """Serves ``app`` with uvicorn in a daemon thread; yields its base URL and stops it on exit."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="kdiqa-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the service did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
