"""The Mithril API client: auth, retries, idempotent creates, paging, one-line errors.

Import-light on purpose (httpx and pydantic are imported when a client is made
or a method runs), so the CLI can name these errors and read the key cheaply.

The API key is read from ``MITHRIL_API_KEY``, else from the ``mithril.api_key``
entry of ``$SFLOW_CONFIG`` (default ``~/.config/sflow/config.toml``). It is sent
only in the ``Authorization`` header and is never part of a message, a log line
or a repr: the service echoing it back is redacted too.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import uuid
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, TypeVar, Union
from urllib.parse import quote

from sflow import __version__
from sflow.errors import MithrilError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

# httpx, pydantic and the models are imported in the methods that use them (see above).
if TYPE_CHECKING:
    from datetime import datetime

    import httpx

    from sflow.mithril import models as m

    ModelT = TypeVar("ModelT", bound="m.BaseModel")

DEFAULT_BASE_URL = "https://api.mithril.ai"
DEFAULT_CONFIG = "~/.config/sflow/config.toml"
NO_KEY = "mithril: no API key: set MITHRIL_API_KEY or run flow init"
KEY_REJECTED = "mithril: the API key was rejected (401): check MITHRIL_API_KEY or run flow init"

log = logging.getLogger(__name__)


class AuthError(MithrilError):
    """No key, a rejected key (401) or a key without the right (403)."""


class NotFound(MithrilError):
    """404: the bid, instance or project does not exist (any more)."""


class Conflict(MithrilError):
    """409: the request clashes with the current state of the thing it names."""


class InvalidRequest(MithrilError):
    """400 or 422: the service (or our own model) refused the request as written."""


class Unavailable(MithrilError):
    """429, 5xx, timeouts or no connection, still so after every retry."""


# --- the key ---------------------------------------------------------------------------------

# Printable ASCII without spaces: anything else cannot go in a header, and
# httpx would quote the offending header value in its error.
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


def config_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("SFLOW_CONFIG") or DEFAULT_CONFIG).expanduser()


def read_config(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise MithrilError(f"mithril: cannot read {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:  # the message is a position, never the contents
        raise MithrilError(f"mithril: {path} is not valid TOML ({err}): fix it or run flow init") from None


def load_api_key(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The API key from ``MITHRIL_API_KEY``, else the config file; ``None`` when neither has one."""
    env = os.environ if environ is None else environ
    key = (env.get("MITHRIL_API_KEY") or "").strip()
    if key:
        return key
    section = read_config(config_path(env)).get("mithril")
    value = section.get("api_key") if isinstance(section, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def save_api_key(path: Union[str, os.PathLike], key: str) -> None:
    """Write ``mithril.api_key`` into the TOML file at ``path``, keeping its other settings.

    The file is written beside itself and renamed into place, created with mode
    0600 from the start, so the key is never readable by others, not even briefly.
    """
    key = key.strip()
    if not _KEY_CHARS.fullmatch(key):
        raise AuthError("mithril: the API key contains spaces or characters an API key cannot have")
    path = Path(path).expanduser()
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old:
        read_config(path)  # refuse to rewrite a file we cannot read back
    new = _with_api_key(old, key)
    try:
        ok = tomllib.loads(new).get("mithril", {}).get("api_key") == key
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise MithrilError(f"mithril: cannot add the API key to {path} safely: "
                           "put it under [mithril] as api_key by hand")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?")


def _with_api_key(text: str, key: str) -> str:
    """``text`` with ``api_key`` under ``[mithril]`` set to ``key`` (a line edit: TOML has no stdlib writer)."""
    value = json.dumps(key)  # a JSON string of printable ASCII is a valid TOML basic string
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    table, mithril_header = None, None
    for i, line in enumerate(lines):
        header = _HEADER.fullmatch(line.rstrip("\n"))
        if header and not line.lstrip().startswith("[["):
            table = header.group(1).replace(" ", "").replace('"', "")
            if table == "mithril":
                mithril_header = i
        elif table == "mithril" and re.match(r"\s*api_key\s*=", line):
            lines[i] = f"api_key = {value}\n"
            return "".join(lines)
        elif table is None and re.match(r"\s*mithril\s*\.\s*api_key\s*=", line):
            lines[i] = f"mithril.api_key = {value}\n"
            return "".join(lines)
    if mithril_header is not None:
        lines.insert(mithril_header + 1, f"api_key = {value}\n")
        return "".join(lines)
    if any(re.match(r"\s*mithril\s*\.", line) for line in lines):
        return f"mithril.api_key = {value}\n" + "".join(lines)
    sep = "\n" if lines else ""
    return "".join(lines) + f"{sep}[mithril]\napi_key = {value}\n"


def new_idempotency_key() -> str:
    """A fresh key for one logical create; persist it to retry that create after a crash."""
    return str(uuid.uuid4())


class _Secret:
    """Holds the key so that no repr, vars() dump or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


# --- errors from answers ---------------------------------------------------------------------

_LOCATIONS = {"body", "query", "path", "header", "cookie"}
_DETAIL_MAX = 300


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _field_message(item: Any) -> str:
    """A 422 item ``{"loc": ["body", "limit_price"], "msg": ...}`` as ``limit_price: msg``."""
    if not isinstance(item, dict):
        return str(item)
    loc = [str(part) for part in item.get("loc") or []]
    if len(loc) > 1 and loc[0] in _LOCATIONS:
        loc = loc[1:]
    msg = str(item.get("msg") or item.get("type") or "invalid")
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _detail(body: Any) -> Optional[str]:
    """What the service said, from ``{"detail": ...}`` (FastAPI) or a gateway's own shape."""
    if isinstance(body, dict):
        for name in ("detail", "message", "error"):
            value = body.get(name)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, list) and value:
                return "; ".join(_field_message(item) for item in value)
            if isinstance(value, dict) and value:
                return _detail(value) or _field_message(value)
    if isinstance(body, str) and body.strip():
        return body
    return None


def response_detail(response: "httpx.Response") -> Optional[str]:
    """The service's explanation of a failed request as one line, or ``None``."""
    try:
        text = _detail(response.json())
    except ValueError:
        raw = response.text.strip()
        # A plain-text reason is worth showing; a proxy's HTML page is not.
        text = raw if raw and len(raw) <= _DETAIL_MAX and not raw.startswith("<") else None
    if text is None:
        return None
    text = _one_line(text)
    if text.lower() in {response.reason_phrase.lower(), "not found"}:
        return None  # FastAPI's bare default, which says less than the status does
    return text


def _thing(method: str, path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if re.fullmatch(r"[a-z]+_\w+", last) else f"{method} {path}"


def error_for(method: str, path: str, response: "httpx.Response") -> MithrilError:
    """The ``MithrilError`` for a non-transient failure answer."""
    status = response.status_code
    detail = response_detail(response)
    if status == 401:
        return AuthError(KEY_REJECTED, status=status)
    if status == 403:
        return AuthError(f"mithril: permission denied (403): {detail or f'the API key may not {method} {path}'}",
                         status=status)
    if status == 404:
        what = detail or f"{_thing(method, path)} was not found"
        return NotFound(f"mithril: {what} (404)", status=status)
    if status == 409:
        return Conflict(f"mithril: {detail or f'{method} {path} conflicts with its current state (409)'}",
                        status=status)
    if status in (400, 422):
        return InvalidRequest(f"mithril: {detail or f'{method} {path} was refused as invalid ({status})'}",
                              status=status)
    what = f"{detail} ({status})" if detail else f"{method} {path} failed ({status} {response.reason_phrase})"
    return MithrilError(f"mithril: {what}", status=status)


def _transient(status: int) -> bool:
    # 501 means "not supported": asking again cannot change that.
    return status in (408, 429) or (500 <= status <= 599 and status != 501)


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; ``None`` if absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN, inf
        return None
    return max(0.0, seconds)


def _iso(value: Union["datetime", str, None]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a time sent to Mithril needs a time zone (a naive time is ambiguous)")
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _csv(value: Union[str, Iterable[str], None]) -> Optional[str]:
    """The API's comma-separated list parameters."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(value) or None


def _pydantic_message(err: Any) -> str:
    first = err.errors()[0]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return _field_message({"loc": first.get("loc"), "msg": msg})


# --- the client ------------------------------------------------------------------------------

class MithrilClient:
    """A synchronous client of the Mithril API (v2).

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``);
    ``sleep`` is what waits between retries. A request is tried at most
    ``max_retries + 1`` times; only 408/429/5xx answers, timeouts and
    connection failures are retried.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        transport: Optional["httpx.BaseTransport"] = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        *,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_after: float = 120.0,
    ):
        import httpx

        key = (api_key if api_key is not None else load_api_key() or "").strip()
        if not key:
            raise AuthError(NO_KEY)
        if not _KEY_CHARS.fullmatch(key):
            raise AuthError("mithril: the API key contains spaces or characters an API key cannot have: "
                            "check MITHRIL_API_KEY or run flow init")
        self._key = _Secret(key)
        self.base_url = (base_url or os.environ.get("MITHRIL_API_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.max_retries = max(0, int(max_retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        # A longer wait than this is not worth blocking on: give up and say so.
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._random = random.Random()
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json",
                     "User-Agent": f"sflow/{__version__}"},
        )

    def __repr__(self) -> str:
        return f"MithrilClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "MithrilClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---

    def _scrub(self, text: str) -> str:
        """``text`` without the key, whatever put it there (a service echoing it back)."""
        return text.replace(self._key.reveal(), "<redacted>")

    def _redact(self, err: MithrilError) -> MithrilError:
        clean = self._scrub(err.message)
        if clean != err.message:
            err.message = clean
            err.args = (clean,)
        return err

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so clients spread out."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
    ) -> "httpx.Response":
        """One logical request, retried when the failure is transient; a 2xx answer or a ``MithrilError``."""
        try:
            return self._request(method, path, params=params, json=json, idempotency_key=idempotency_key)
        except MithrilError as err:
            raise self._redact(err) from None

    def _request(self, method, path, *, params, json, idempotency_key) -> "httpx.Response":
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        # The same key on every attempt: a create the service did receive is not made twice.
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            wait = None
            try:
                response = self._http.request(method, path, params=query, json=json, headers=headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure, status = f"could not reach {self.base_url} ({_describe(exc)})", None
            except httpx.HTTPError as exc:  # a bad URL or scheme: trying again cannot help
                raise MithrilError(f"mithril: {method} {path}: {_describe(exc)}") from None
            else:
                status = response.status_code
                log.debug("mithril: %s %s -> %d", method, path, status)
                if status < 400:
                    return response
                if not _transient(status):
                    raise error_for(method, path, response)
                detail = response_detail(response)
                busy = "is rate limiting requests" if status == 429 else "is unavailable"
                failure = f"the API {busy} ({status}{': ' + detail if detail else ''})"
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            failure = self._scrub(failure)  # it goes to the log too
            if attempt == attempts:
                break
            delay = self._delay(attempt) if wait is None else wait
            if delay > self.max_retry_after:
                raise Unavailable(f"mithril: {failure}: asked to retry after {delay:.0f} s, try again later",
                                  status=status)
            log.info("mithril: %s %s: %s; retrying in %.1f s (attempt %d of %d)",
                     method, path, failure, delay, attempt + 1, attempts)
            self._sleep(delay)
        tries = f"after {attempts} attempts" if attempts > 1 else "(no retries)"
        raise Unavailable(f"mithril: {failure} {tries}: try again later", status=status)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise MithrilError(f"mithril: {method} {path} answered something that is not JSON "
                               f"({response.status_code})", status=response.status_code) from None

    @staticmethod
    def _parse(model: "type[ModelT]", data: Any, what: str) -> "ModelT":
        from pydantic import ValidationError

        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise MithrilError(f"mithril: unexpected answer from {what}: {_pydantic_message(err)}") from None

    @staticmethod
    def _build(model: "type[ModelT]", value: Any) -> "ModelT":
        """A request model from a model or a mapping; a refusal reads like the service's own 422."""
        from pydantic import ValidationError

        if isinstance(value, model):
            return value
        try:
            return model.model_validate(value)
        except ValidationError as err:
            raise InvalidRequest(f"mithril: {_pydantic_message(err)}") from None

    def _get(self, model: "type[ModelT]", path: str, params: Optional[Mapping[str, Any]] = None) -> "ModelT":
        return self._parse(model, self._json("GET", path, params=params), f"GET {path}")

    def _create(self, path: str, body: "m.Request", model: "type[ModelT]",
                idempotency_key: Optional[str]) -> "ModelT":
        key = idempotency_key or new_idempotency_key()
        data = self._json("POST", path, json=body.to_json(), idempotency_key=key)
        return self._parse(model, data, f"POST {path}")

    def paginate(
        self,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        limit: Optional[int] = None,
        model: "Optional[type[ModelT]]" = None,
        items_key: str = "data",
    ) -> Iterator[Any]:
        """Every item of a list, page after page.

        A list answers a bare JSON array or ``{"data": [...], "next_cursor": ...}`` (``items_key``
        names another list field); ``limit`` is the page size asked for. Items are dicts, or
        ``model`` instances.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if limit is not None:
            query["limit"] = limit
        seen: set[str] = set()
        while True:
            body = self._json("GET", path, params=query)
            if isinstance(body, list):
                items, cursor = body, None
            elif isinstance(body, dict) and isinstance(body.get(items_key), list):
                items, cursor = body[items_key], body.get("next_cursor")
            else:
                raise MithrilError(f"mithril: unexpected answer from GET {path}: neither a list nor a page")
            for item in items:
                yield item if model is None else self._parse(model, item, f"GET {path}")
            if not cursor:
                return
            if cursor in seen:  # a service bug would otherwise loop forever
                raise MithrilError(f"mithril: GET {path} handed back a page cursor it had already given")
            seen.add(cursor)
            query["next_cursor"] = cursor

    def _list(self, model: "type[ModelT]", path: str, params: Optional[Mapping[str, Any]] = None,
              limit: Optional[int] = None) -> "list[ModelT]":
        return list(self.paginate(path, params, limit=limit, model=model))

    # --- catalogue and market ---

    def instance_types(self) -> "list[m.InstanceTypeModel]":
        from sflow.mithril.models import InstanceTypeModel

        return self._list(InstanceTypeModel, "/v2/instance-types")

    def spot_availability(self) -> "list[m.AuctionModel]":
        from sflow.mithril.models import AuctionModel

        return self._list(AuctionModel, "/v2/spot/availability")

    def current_prices(self, instance_type: str, region: Optional[str] = None,
                       instance_quantity: int = 1) -> "m.CurrentPricesResponse":
        """Spot, reserved and minimum prices in integer cents per instance-hour."""
        from sflow.mithril.models import CurrentPricesResponse

        params = {"instance_type": instance_type, "region": region, "instance_quantity": instance_quantity}
        return self._get(CurrentPricesResponse, "/v2/pricing/current", params)

    # --- bids ---

    def create_bid(self, bid: "Union[m.CreateBidRequest, Mapping[str, Any]]", *,
                   idempotency_key: Optional[str] = None) -> "m.BidModel":
        """Place a spot bid. Pass the ``idempotency_key`` persisted for this bid to retry it safely."""
        from sflow.mithril.models import BidModel, CreateBidRequest

        return self._create("/v2/spot/bids", self._build(CreateBidRequest, bid), BidModel, idempotency_key)

    def get_bid(self, bid_id: str) -> "m.BidModel":
        from sflow.mithril.models import BidModel

        return self._get(BidModel, f"/v2/spot/bids/{_segment(bid_id)}")

    def bid_status(self, bid_id: str) -> "m.BidStatusResponse":
        """The detailed status, which also knows ``Relocating``."""
        from sflow.mithril.models import BidStatusResponse

        return self._get(BidStatusResponse, f"/v2/spot/bids/{_segment(bid_id)}/status")

    def list_bids(
        self,
        project: Optional[str] = None,
        *,
        status: "Optional[m.BidStatus]" = None,
        instance_type: Optional[str] = None,
        region: Optional[str] = None,
        name: Optional[str] = None,
        sort_by: Optional[str] = None,
        sort_dir: "Optional[m.SortDirection]" = None,
        limit: Optional[int] = None,
    ) -> "list[m.BidModel]":
        """Bids of ``project``, or of every project of the user when it is ``None``."""
        from sflow.mithril.models import BidModel

        params = {"project": project, "status": status, "instance_type": instance_type, "region": region,
                  "name": name, "sort_by": sort_by, "sort_dir": sort_dir}
        return self._list(BidModel, "/v2/spot/bids", params, limit)

    def update_bid(
        self,
        bid_id: str,
        *,
        limit_price: Optional[str] = None,
        paused: Optional[bool] = None,
        volumes: Optional[list[str]] = None,
        memory_gb: Optional[int] = None,
    ) -> "m.BidModel":
        """Change a bid's limit price (a dollar string), pause or resume it, or its volumes/memory."""
        from sflow.mithril.models import BidModel, UpdateBidRequest

        body = self._build(UpdateBidRequest, {"limit_price": limit_price, "paused": paused,
                                              "volumes": volumes, "memory_gb": memory_gb}).to_json()
        if not body:
            raise ValueError("update_bid needs at least one of limit_price, paused, volumes, memory_gb")
        path = f"/v2/spot/bids/{_segment(bid_id)}"
        return self._parse(BidModel, self._json("PATCH", path, json=body), f"PATCH {path}")

    def pause_bid(self, bid_id: str) -> "m.BidModel":
        return self.update_bid(bid_id, paused=True)

    def resume_bid(self, bid_id: str) -> "m.BidModel":
        return self.update_bid(bid_id, paused=False)

    def cancel_bid(self, bid_id: str) -> bool:
        """Delete (terminate) a bid: how a job stops paying.

        Idempotent for us: ``False`` when the bid was already gone (404), ``True`` otherwise.
        """
        try:
            self.request("DELETE", f"/v2/spot/bids/{_segment(bid_id)}")
        except NotFound:
            return False
        return True

    # --- instances ---

    def list_instances(
        self,
        project: Optional[str] = None,
        *,
        bid: Union[str, Iterable[str], None] = None,
        reservation: Union[str, Iterable[str], None] = None,
        status_in: Union[str, Iterable[str], None] = None,
        instance_type: Optional[str] = None,
        region: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> "list[m.InstanceModel]":
        """Instances of a project, optionally only those of some bids or reservations.

        The API needs the project; without one it is read from the (first) bid named.
        """
        from sflow.mithril.models import InstanceModel

        bids = [bid] if isinstance(bid, str) else list(bid or [])
        if project is None:
            if not bids:
                raise ValueError("list_instances needs a project or a bid")
            project = self.get_bid(bids[0]).project
        params = {"project": project, "bid_fid_in": _csv(bids), "reservation_fid_in": _csv(reservation),
                  "status_in": _csv(status_in), "instance_type": instance_type, "region": region}
        return self._list(InstanceModel, "/v2/instances", params, limit)

    def pricing_history(
        self,
        project: str,
        *,
        bid: Optional[str] = None,
        instance: Optional[str] = None,
        reservation: Optional[str] = None,
        start_time: Union["datetime", str, None] = None,
        end_time: Union["datetime", str, None] = None,
        limit: Optional[int] = None,
    ) -> "list[m.InstancePricingHistory]":
        """What Mithril billed, per instance (of a bid, a reservation, or one instance), every page."""
        from sflow.mithril.models import InstancePricingHistory

        params = {"project": project, "bid_fid": bid, "instance_fid": instance, "reservation_fid": reservation,
                  "start_time": _iso(start_time), "end_time": _iso(end_time)}
        return list(self.paginate("/v2/instances/pricing/history", params, limit=limit,
                                  model=InstancePricingHistory, items_key="instances"))

    def status_history(
        self,
        project: str,
        *,
        bid: Optional[str] = None,
        instance: Optional[str] = None,
        reservation: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> "list[m.InstanceStatusHistory]":
        """Every status each instance (of a bid, a reservation, or one instance) has had, every page."""
        from sflow.mithril.models import InstanceStatusHistory

        params = {"project": project, "bid_fid": bid, "instance_fid": instance, "reservation_fid": reservation}
        return list(self.paginate("/v2/instances/status/history", params, limit=limit,
                                  model=InstanceStatusHistory, items_key="instances"))

    # --- account ---

    def me(self) -> "m.MeResponse":
        from sflow.mithril.models import MeResponse

        return self._get(MeResponse, "/v2/me")

    def projects(self) -> "list[m.ProjectModel]":
        from sflow.mithril.models import ProjectModel

        return self._list(ProjectModel, "/v2/projects")

    def ssh_keys(self, project: str) -> "list[m.NewSshKeyModel]":
        from sflow.mithril.models import NewSshKeyModel

        return self._list(NewSshKeyModel, "/v2/ssh-keys", {"project": project})

    def create_ssh_key(self, project: str, name: str, public_key: Optional[str] = None, *,
                       required: bool = False, idempotency_key: Optional[str] = None) -> "m.CreatedSshKeyModel":
        """Register ``public_key``; without one the service makes a pair and answers ``private_key``."""
        from sflow.mithril.models import CreatedSshKeyModel, CreateSshKeyRequest

        body = self._build(CreateSshKeyRequest, {"project": project, "name": name,
                                                 "public_key": public_key, "required": required})
        return self._create("/v2/ssh-keys", body, CreatedSshKeyModel, idempotency_key)

    def api_keys(self) -> "list[m.ApiKeyModel]":
        from sflow.mithril.models import ApiKeyModel

        return self._list(ApiKeyModel, "/v2/api-keys")

    def create_api_key(self, name: str, expires_at: "datetime") -> "m.CreateApiKeyResponse":
        """A new API key that stops working at ``expires_at``; its ``secret`` is answered only here.
        Not idempotent (the API takes no key for it): find a lost answer's key by its name."""
        from sflow.mithril.models import CreateApiKeyRequest, CreateApiKeyResponse

        body = self._build(CreateApiKeyRequest, {"name": name, "expires_at": expires_at})
        return self._parse(CreateApiKeyResponse, self._json("POST", "/v2/api-keys", json=body.to_json()),
                           "POST /v2/api-keys")

    def revoke_api_key(self, key_fid: str) -> bool:
        """``False`` when the key was already gone (404)."""
        try:
            self.request("DELETE", f"/v2/api-keys/{_segment(key_fid)}")
        except NotFound:
            return False
        return True

    # --- reservations ---

    def reservations(
        self,
        project: str,
        *,
        status: "Optional[m.ReservationStatus]" = None,
        instance_type: Optional[str] = None,
        region: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> "list[m.ReservationModel]":
        from sflow.mithril.models import ReservationModel

        params = {"project": project, "status": status, "instance_type": instance_type, "region": region}
        return self._list(ReservationModel, "/v2/reservation", params, limit)

    def create_reservation(self, reservation: "Union[m.CreateReservationRequest, Mapping[str, Any]]", *,
                           idempotency_key: Optional[str] = None) -> "m.ReservationModel":
        from sflow.mithril.models import CreateReservationRequest, ReservationModel

        body = self._build(CreateReservationRequest, reservation)
        return self._create("/v2/reservation", body, ReservationModel, idempotency_key)

    def terminate_reservation_instances(self, reservation_id: str, instances: Iterable[str]) -> list[str]:
        """Give a reservation's instances back (capacity reduced, for the early-termination credit).

        Answers the instances terminated: all of them, or those a partial success (207) names.
        """
        path = f"/v2/reservation/{_segment(reservation_id)}/terminate-instances"
        wanted = list(instances)
        response = self.request("POST", path, json={"instances": wanted, "reduce_capacity": True})
        if response.status_code == 207:
            try:
                return list(response.json().get("terminated_instances") or [])
            except ValueError:
                return []
        return wanted

    def reservation_availability(
        self,
        project: str,
        instance_type: str,
        region: str,
        *,
        mode: str = "latest_end_time",
        start_time: Union["datetime", str, None] = None,
        end_time: Union["datetime", str, None] = None,
        earliest_start_time: Union["datetime", str, None] = None,
        latest_end_time: Union["datetime", str, None] = None,
        quantity: Optional[int] = None,
    ) -> "Union[m.GetLatestEndTimeResponse, m.CheckAvailabilityResponse, list[m.AvailabilitySlotModel]]":
        """Reservable capacity, by mode.

        ``latest_end_time`` (start_time, quantity) -> ``GetLatestEndTimeResponse``;
        ``check`` (start_time, end_time, quantity) -> ``CheckAvailabilityResponse``;
        ``slots`` (earliest_start_time, latest_end_time) -> a list of ``AvailabilitySlotModel``.
        """
        from sflow.mithril import models as m

        path = "/v2/reservation/availability"
        params = {"project": project, "instance_type": instance_type, "region": region, "mode": mode,
                  "start_time": _iso(start_time), "end_time": _iso(end_time),
                  "earliest_start_time": _iso(earliest_start_time), "latest_end_time": _iso(latest_end_time),
                  "quantity": quantity}
        data = self._json("GET", path, params=params)
        # The schema declares a list of slots for every mode; the description gives each its own shape.
        if isinstance(data, list):
            return [self._parse(m.AvailabilitySlotModel, item, f"GET {path}") for item in data]
        model = m.CheckAvailabilityResponse if mode == "check" else m.GetLatestEndTimeResponse
        return self._parse(model, data, f"GET {path}")


def _segment(value: str) -> str:
    """An id as one path segment (an id with a slash must not reach another endpoint)."""
    return quote(str(value), safe="")


def _describe(exc: BaseException) -> str:
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
