"""Test helpers for the zoo: a local HTTP server, temporary models and metafiles."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from kerasseg.zoo import metafiles, registry


class LocalServer:
    """An HTTP server on 127.0.0.1 (random port) in a thread, with scripted behaviour.

    Attributes:
        files: URL path -> body served with status 200 and a Content-Length.
        redirects: URL path -> (status, location path), e.g. ``(301, "/files/a.bin")``.
        truncated: URL paths whose body is cut: the full Content-Length is announced, half
            the bytes are sent and the connection is closed.
        requests: Every path requested, in order.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self.truncated: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path in server.redirects:
                    status, location = server.redirects[self.path]
                    self.send_response(status)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncated:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # silence
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def temporary_model(name: str, builder: Callable[..., Any], **options: Any) -> Iterator[None]:
    """Registers `builder` as `name` for the duration of the block."""
    registry.register_model(name, **options)(builder)
    try:
        yield
    finally:
        registry._REGISTRY.pop(name, None)


def write_metafile(directory: Path, family: str, content: dict[str, Any]) -> Path:
    """Writes ``<directory>/<family>.yml`` (a standalone metafile) and returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{family}.yml"
    path.write_text(yaml.safe_dump({"family": family, **content}, sort_keys=False))
    metafiles.clear_cache()
    return path
