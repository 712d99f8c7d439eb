"""A quiet local HTTP file server with Range support, for fetching the miniature archives.

    with serve(directory) as base:           # base == "http://127.0.0.1:<port>"
        fetch("cub", {"url": f"{base}/CUB_200_2011.tgz", ...}, out)
        base.requests                         # every request it answered, in order

``base`` is a ``str`` (the base URL) that also carries ``requests``: one :class:`Request` per
request answered (path, ``Range`` header, status), so tests can count downloads and see that a
resumed download asked for the rest of the file.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int


class BaseURL(str):
    """The server's base URL; ``requests`` lists what the server answered so far."""

    requests: list[Request]

    def requests_for(self, name: str) -> list[Request]:
        """Requests for the file ``name`` (a path relative to the served directory)."""
        return [r for r in self.requests if r.path == "/" + name.lstrip("/")]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory.resolve()
        self.requests: list[Request] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        pass  # a client hanging up mid-transfer is expected in tests; keep stderr quiet


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        pass

    def _record(self, status: int) -> None:
        with self.server.lock:
            self.server.requests.append(Request(self.command, self.path, self.headers.get("Range"), status))

    def _file(self) -> Path | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        path = (self.server.directory / rel).resolve()
        if not path.is_relative_to(self.server.directory) or not path.is_file():
            return None
        return path

    def _reply(self, status: int, headers: dict[str, str]) -> None:
        self._record(status)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _serve(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self._reply(404, {"Content-Length": "0"})
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        header = self.headers.get("Range")
        if header is not None:
            match = _RANGE.match(header.strip())
            if match is None or match.groups() == ("", ""):
                self._reply(416, {"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                return
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:  # a suffix range: the last N bytes
                start = max(0, size - int(last))
            if start >= size or start > end:
                self._reply(416, {"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        self._reply(status, headers)
        if body:
            with path.open("rb") as handle:
                handle.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    block = handle.read(min(1 << 16, remaining))
                    if not block:
                        break
                    self.wfile.write(block)
                    remaining -= len(block)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)


@contextmanager
def serve(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a daemon thread; yield the base URL."""
    server = _Server(Path(directory))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    base = BaseURL(f"http://127.0.0.1:{server.server_address[1]}")
    base.requests = server.requests
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

