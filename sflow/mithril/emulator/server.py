"""The emulator on the wire: a threaded HTTP/1.1 server on loopback and the auction ticker.

``start_emulator(**config)`` starts both in background threads and returns the running
``Emulator`` (``.url``, ``.market``, ``.tick()``, ``.close()``); the keyword arguments are
the fields of ``EmulatorConfig``.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sflow.mithril.emulator.service import EmulatorConfig, Service

# how often the background thread brings the market up to the clock; requests do so too
_POLL_SECONDS = 0.1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    disable_nagle_algorithm = True  # headers and body leave in two writes: don't wait for an ACK between
    server_version = "mithril-emulator"
    service: Service  # set on the subclass made per server

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.service.handle(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                       dict(self.headers.items()), raw)
        if response.drop:
            self.close_connection = True  # the socket closes with nothing written
            return
        payload = response.encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if response.status != 204 and self.command != "HEAD":
            self.wfile.write(payload)

    def __getattr__(self, name: str):
        # every method, even one http.server has never heard of, reaches the service,
        # so that an unsupported one is a JSON 405 as FastAPI answers, not an HTML 501
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def log_message(self, format, *args):  # quiet: tests and users read the API, not an access log
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6  # --host ::1


class Emulator:
    """A running emulator: HTTP server plus background ticker over one ``Service``."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.service = Service(self.config)
        handler = type("Handler", (_Handler,), {"service": self.service})
        server = _Server6 if ":" in self.config.host else _Server
        self._httpd = server((self.config.host, self.config.port), handler)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def market(self):
        return self.service.market

    @property
    def account(self):
        return self.service.account

    @property
    def violations(self) -> list[str]:
        return self.service.violations

    def start(self) -> "Emulator":
        serve = lambda: self._httpd.serve_forever(poll_interval=0.05)  # noqa: E731 - a quick close()
        self._threads = [threading.Thread(target=serve, name="mithril-emulator-http", daemon=True),
                         threading.Thread(target=self._ticker, name="mithril-emulator-ticker", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def _ticker(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            self.service.sync()

    def tick(self) -> None:
        """Force an auction now."""
        self.service.tick()

    def sync(self) -> None:
        """Bring the market up to the clock now (the ticker does so every 100 ms)."""
        self.service.sync()

    def ledger(self) -> dict:
        with self.service.lock:
            now = self.service.clock()
            self.service.sync(now)
            return self.market.ledger_dump(now)

    def cost_cents(self, bid_fid: str) -> float:
        with self.service.lock:
            now = self.service.clock()
            self.service.sync(now)
            return self.market.cost_cents(bid_fid, now)

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self.service.close_hosts()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_emulator(**config) -> Emulator:
    """Start an emulator in this process (``port=0`` picks a free port); see ``EmulatorConfig``."""
    return Emulator(EmulatorConfig(**config)).start()
