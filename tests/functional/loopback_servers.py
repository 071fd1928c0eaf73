"""Small loopback servers to put between a client and Keyfob: a keep-alive proxy that counts connections and can drop
them, fail or speak TLS, and a server that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# Headers about one hop: the proxy speaks for itself on each side.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer", "upgrade"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, unlike gunicorn's sync workers
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self.server.proxy._opened(self.connection)

    def finish(self) -> None:
        self.server.proxy._closed(self.connection)
        super().finish()

    def log_message(self, format, *args) -> None:
        pass  # quiet: the tests read what they need from the counts

    def do_POST(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = proxy._take_request(body)
        if answer == "drop":
            self.close_connection = True  # read, then gone without a word: a connection closed as it was used
            return
        if answer is not None:
            status, headers, data = answer
        else:
            upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
            try:
                upstream.request(self.command, self.path, body,
                                 {name: value for name, value in self.headers.items()
                                  if name.lower() not in HOP_BY_HOP})
                response = upstream.getresponse()
                status, data = response.status, response.read()
                headers = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP]
            finally:
                upstream.close()
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: KeepAliveProxy

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (the point of several tests) is no error to print: socketserver's
        # default writes a traceback to stderr, which a test that checks what reaches stderr would read as a leak.
        pass


class KeepAliveProxy:
    """Forwards to `upstream` (an http:// base URL), keeping client connections open; counts what it accepts.

    `accepted` counts connections, `bodies` keeps each request body as JSON. `drop_next(n)` makes the next n requests
    end their connection unanswered, `fail_next(status, headers)` answers the next one itself, `drop_idle()` closes
    every open connection, `stop()` stops the proxy for good. With `tls` (cert and key files) it speaks https.
    """

    def __init__(self, upstream: str, tls: tuple[Path, Path] | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.accepted = 0
        self.bodies: list = []
        self._drops = 0
        self._failure = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _Forward)
        self._server.proxy = self
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            self._open.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)

    def _take_request(self, body: bytes):
        """What to do with a request: "drop", an answer (status, headers, body) of the proxy's own, or None."""
        with self._lock:
            self.bodies.append(json.loads(body or b"null"))
            if self._drops:
                self._drops -= 1
                return "drop"
            failure, self._failure = self._failure, None
            return failure

    def drop_next(self, count: int) -> None:
        with self._lock:
            self._drops = count

    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        with self._lock:
            self._failure = (status, list((headers or {}).items()), body)

    def drop_idle(self) -> None:
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.drop_idle()
        self._thread.join(timeout=5)


class SilentServer:
    """Accepts connections and never answers: a Keyfob that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: stop
                return
            self.accepted.append(connection)

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave waiting
        self._listener.close()
        for connection in self.accepted:
            connection.close()
        self._thread.join(timeout=5)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) files for 127.0.0.1, made by openssl; the certificate is its own CA."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key
