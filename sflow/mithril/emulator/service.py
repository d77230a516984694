"""The emulated service without its transport: auth, routing, validation, idempotency, faults, hosts.

``Service.handle`` turns one request into one ``Response``; the HTTP server only moves
bytes. All state sits behind one lock, and every request first brings the market up to
the clock, so what a client sees never lags behind the background ticker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sflow.mithril.emulator import views
from sflow.mithril.emulator.account import Account
from sflow.mithril.emulator.catalog import Catalog, default_catalog
from sflow.mithril.emulator.faults import KINDS, Fault, FaultPlan
from sflow.mithril.emulator.ids import Ids
from sflow.mithril.emulator.market import Market, MarketConfig, MarketError
from sflow.mithril.money import parse_dollars
from sflow.mithril.emulator.routes import ROUTES, Request
from sflow.mithril.emulator.schema import ApiSchema, Operation, RequestInvalid, default_schema

log = logging.getLogger("sflow.mithril.emulator")

# what an instance's ssh_destination says when no host factory gives it a real one
PLACEHOLDER_DESTINATION = "127.0.0.1:0"

# host_factory(instance_id, hostname, authorized_keys) -> (ssh_destination "127.0.0.1:PORT", close)
HostFactory = Callable[[str, str, list], tuple]


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # None: any bearer key is accepted
    tick: float = 2.0  # auction cadence, seconds (production: 120)
    notice: float = 300.0  # preemption notice, seconds
    startup: float = 3.0  # allocated -> running, seconds
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = KINDS
    seed: int = 0
    slow_seconds: float = 1.0  # how long a "slow" fault stalls
    retry_after: int = 1  # seconds, sent with 429 and 503
    catalog: Catalog | None = None
    clock: Callable[[], float] = time.time
    host_factory: HostFactory | None = None
    check_responses: bool = False  # record every answer that departs from the schema in .violations
    schema: ApiSchema | None = None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering

    def encode(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


_FAULT_ANSWERS = {
    "429": (429, "Too Many Requests"),
    "500": (500, "Internal Server Error"),
    "503": (503, "Service Unavailable"),
}


class Service:
    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config = config or EmulatorConfig()
        self.clock = config.clock
        self.schema = config.schema or default_schema()
        self.lock = threading.RLock()
        now = self.clock()
        ids = Ids(config.seed)
        self.market = Market(config.catalog or default_catalog(),
                             MarketConfig(config.tick, config.notice, config.startup), start=now, ids=ids)
        self.account = Account(ids, now)
        self.faults = FaultPlan(config.fault_rate, config.seed, config.fault_kinds)
        self.idempotency: dict[tuple[str, str], tuple[str, int, Any]] = {}
        self.hosts: dict[str, Callable[[], None]] = {}
        self.violations: list[str] = []

    # ----- time and hosts --------------------------------------------------------------------

    def sync(self, now: float | None = None) -> None:
        """Bring the market up to ``now`` and start or stop the hosts it asks for."""
        with self.lock:
            now = self.clock() if now is None else now
            self.market.advance(now)
            self._hosts(now)

    def tick(self) -> None:
        """An auction now, off schedule."""
        with self.lock:
            now = self.clock()
            self.market.tick(now)
            self._hosts(now)

    def _hosts(self, now: float) -> None:
        # the factory runs with the lock held, so nobody sees a running instance without its host
        for event in self.market.drain_events():
            inst = self.market.instances[event.instance]
            if event.kind == "start":
                if self.config.host_factory is None:
                    inst.ssh_destination = PLACEHOLDER_DESTINATION
                    continue
                try:
                    destination, close = self.config.host_factory(inst.fid, inst.hostname, self._keys_for(inst))
                except Exception:
                    log.exception("host for %s did not start", inst.fid)
                    self.market.fail_instance(inst.fid, now)
                    continue
                inst.ssh_destination = destination
                self.hosts[inst.fid] = close
            else:
                close = self.hosts.pop(inst.fid, None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.exception("host for %s did not stop cleanly", inst.fid)

    def _keys_for(self, inst) -> list[str]:
        owner = self.market.bids[inst.bid] if inst.bid else self.market.reservations[inst.reservation]
        return self.account.authorized_keys(inst.project, owner.launch_specification.get("ssh_keys") or [])

    def close_hosts(self) -> None:
        with self.lock:
            hosts, self.hosts = self.hosts, {}
        for fid, close in hosts.items():
            try:
                close()
            except Exception:
                log.exception("host for %s did not stop cleanly", fid)

    # ----- requests --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes) -> Response:
        headers = {k.lower(): v for k, v in headers.items()}
        if path == "/openapi.json" and method == "GET":
            return Response(200, self.schema.doc)
        if path.startswith("/_emulator/"):
            return self._authorized(headers) or self._control(method, path, body)
        op, path_params, allowed = self.schema.match(method, path)
        if op is None:
            if allowed:
                return Response(405, {"detail": "Method Not Allowed"}, {"Allow": ", ".join(allowed)})
            return Response(404, {"detail": "Not Found"})
        fault = self.faults.draw(method, path) if self.config.fault_rate > 0 or self.faults.outages else None
        if fault is not None and fault.phase == "before":
            answer = self._fault(fault)
            if answer is not None:
                return answer
        response = self._authorized(headers) or self._serve(op, path_params, query, headers, body)
        if fault is not None and fault.phase == "after":
            return self._fault(fault) or response
        return response

    def _fault(self, fault: Fault) -> Response | None:
        if fault.kind == "slow":
            time.sleep(self.config.slow_seconds)
            return None
        if fault.kind == "drop":
            return Response(0, drop=True)
        status, text = _FAULT_ANSWERS[fault.kind]
        headers = {"Retry-After": str(self.config.retry_after)} if status in (429, 503) else {}
        return Response(status, {"detail": text}, headers)

    def _authorized(self, headers: Mapping[str, str]) -> Response | None:
        """None when the bearer key is acceptable, else the 401 to answer (headers: lower-case names)."""
        scheme, _, key = (headers.get("authorization") or "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not key.strip():
            return Response(401, {"detail": "Not authenticated"}, challenge)
        with self.lock:
            issued = self.account.api_key_by_secret(key.strip())
            if issued is not None:  # made with POST /v2/api-keys: good until revoked or expired
                if issued.usable(self.clock()):
                    return None
                return Response(401, {"detail": "API key expired or revoked"}, challenge)
        if self.config.api_key is not None and key.strip() != self.config.api_key:
            return Response(401, {"detail": "Invalid API key"}, challenge)
        return None

    def _serve(self, op: Operation, path_params: dict, query: Mapping[str, list[str]],
               headers: Mapping[str, str], raw: bytes) -> Response:
        idem_key = headers.get("idempotency-key") if op.method == "POST" else None
        handler = ROUTES.get(op.operation_id)
        if handler is None:
            return Response(501, {"detail": f"{op.method} {op.path} is not implemented by the emulator"})
        with self.lock:
            now = self.clock()
            self.sync(now)
            try:
                values = self.schema.parse_query(op, dict(query))
                body = self._json_body(op, raw)
                self.schema.check_body(op, body)
                fingerprint = json.dumps(body, sort_keys=True)
                if idem_key:
                    stored = self.idempotency.get((op.operation_id, idem_key))
                    if stored is not None:
                        if stored[0] != fingerprint:
                            return Response(409, {"detail": "Idempotency-Key already used with a different request"})
                        return Response(stored[1], stored[2])  # the first answer again, not a second object
                status, payload = handler(self, Request(now, path_params, values, body))
                self.sync(now)
                if idem_key and 200 <= status < 300:
                    self.idempotency[(op.operation_id, idem_key)] = (fingerprint, status, payload)
            except RequestInvalid as e:
                status, payload = 422, {"detail": e.detail}
            except MarketError as e:
                status = e.status
                loc = ["body", e.field] if e.field else ["body"]
                payload = ({"detail": [{"loc": loc, "msg": e.message, "type": "value_error"}]}
                           if status == 422 else {"detail": e.message})
            except Exception:  # a fault of the emulator's own: say so rather than drop the connection
                log.exception("%s %s failed", op.method, op.path)
                status, payload = 500, {"detail": "Internal Server Error"}
            if self.config.check_responses:
                self.violations.extend(self.schema.response_errors(op, status, payload))
            return Response(status, payload)

    @staticmethod
    def _json_body(op: Operation, raw: bytes):
        if op.body_ref is None or not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            pos = getattr(e, "pos", 0)
            raise RequestInvalid([{"loc": ["body", pos], "msg": "JSON decode error", "type": "json_invalid"}]) from None

    # ----- control endpoints (not part of the Mithril API) -----------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> Response:
        with self.lock:
            now = self.clock()
            self.sync(now)
            if (method, path) == ("POST", "/_emulator/tick"):
                self.tick()
                return Response(200, {"ticked_at": views.iso(now)})
            if (method, path) == ("GET", "/_emulator/ledger"):
                return Response(200, {"now": now, "bids": self.market.ledger_dump(now)})
            if (method, path) == ("POST", "/_emulator/script"):
                try:
                    self.script(json.loads(raw or b"{}"), now)
                except (ValueError, KeyError, TypeError, MarketError) as e:
                    return Response(400, {"detail": f"bad script: {e}"})
                return Response(200, {"scripted_at": views.iso(now)})
        return Response(404, {"detail": "Not Found"})

    def script(self, spec: dict, now: float) -> None:
        """``{"region", "instance_type", "supply": [[s, capacity]], "demand": [[s, "$price", quantity]]}``,
        with ``s`` in seconds from now; either list replaces that pool's script."""
        offset = now - self.market.start
        region, it = spec["region"], spec["instance_type"]
        if "supply" in spec:
            self.market.script_supply(region, it, [(offset + float(t), int(c)) for t, c in spec["supply"]])
        if "demand" in spec:
            self.market.script_demand(region, it, [
                (offset + float(t), parse_dollars(p) if isinstance(p, str) else int(p), int(q))
                for t, p, q in spec["demand"]])
