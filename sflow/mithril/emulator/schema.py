"""The Mithril OpenAPI document as the emulator's contract: routing, request and response checks.

``openapi.json`` beside this module is a verbatim copy of the real service's schema.
It is OpenAPI 3.1 (so JSON Schema 2020-12) but keeps OpenAPI 3.0's ``nullable: true``
on 149 fields, which 2020-12 ignores; the real service does answer ``null`` there, so
``normalize`` turns each into an explicit "or null" before anything validates against it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
_URI = "urn:mithril:openapi"
_METHODS = ("get", "put", "post", "delete", "patch")


class RequestInvalid(Exception):
    """A request that breaks the schema; ``detail`` is FastAPI's 422 list."""

    def __init__(self, detail: list[dict]):
        super().__init__(detail)
        self.detail = detail


def invalid(loc: list, msg: str, type_: str = "value_error") -> RequestInvalid:
    return RequestInvalid([{"loc": list(loc), "msg": msg, "type": type_}])


def load_raw(path: str = SCHEMA_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def normalize(node):
    """Deep copy of a schema with every ``nullable: true`` turned into 2020-12's "or null"."""
    if isinstance(node, list):
        return [normalize(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: normalize(v) for k, v in node.items()}
    if out.get("nullable") is True:
        del out["nullable"]
        if "$ref" in out:
            return {"anyOf": [out, {"type": "null"}]}
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"] if "null" not in types else types
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    return out


@dataclass
class Param:
    name: str
    where: str  # query | path
    required: bool
    schema: dict
    ref: str  # where its schema sits in the registry

    @property
    def kind(self) -> str:
        """The non-null JSON type the value must have."""
        t = self.schema.get("type", "string")
        types = [x for x in (t if isinstance(t, list) else [t]) if x != "null"]
        return types[0] if types else "string"


@dataclass
class Operation:
    method: str
    path: str
    operation_id: str
    params: list[Param]
    body_ref: str | None
    body_required: bool
    responses: dict[str, str | None]  # status -> registry ref of the JSON body (None: no body)
    regex: re.Pattern = field(repr=False, default=None)


def _pointer(*parts: str) -> str:
    return f"{_URI}#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class ApiSchema:
    """Operations of the OpenAPI document and validators for their inputs and outputs."""

    def __init__(self, raw: dict | None = None):
        self.raw = raw if raw is not None else load_raw()
        self.doc = normalize(self.raw)  # what /openapi.json serves
        # the registry holds the document plus each operation's inline schemas, so that every
        # validator is a $ref into one resource and the document's own #/components refs resolve
        extra: dict = {"params": {}, "bodies": {}, "responses": {}}
        store = dict(self.doc, **{"x-emulator": extra})
        self.operations: list[Operation] = []
        for path, item in self.doc["paths"].items():
            for method in _METHODS:
                op = item.get(method)
                if op is None:
                    continue
                opid = op["operationId"]
                params = []
                for p in op.get("parameters", []):
                    extra["params"].setdefault(opid, {})[p["name"]] = p.get("schema", {})
                    params.append(Param(p["name"], p["in"], p.get("required", False), p.get("schema", {}),
                                        _pointer("x-emulator", "params", opid, p["name"])))
                body_ref, body_required = None, False
                content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
                if content:
                    extra["bodies"][opid] = content["schema"]
                    body_ref = _pointer("x-emulator", "bodies", opid)
                    body_required = op["requestBody"].get("required", False)
                responses = {}
                for status, resp in op.get("responses", {}).items():
                    body = (resp.get("content") or {}).get("application/json")
                    if body:
                        extra["responses"].setdefault(opid, {})[status] = body["schema"]
                        responses[status] = _pointer("x-emulator", "responses", opid, status)
                    else:
                        responses[status] = None
                regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
                self.operations.append(Operation(method.upper(), path, opid, params, body_ref, body_required,
                                                 responses, regex))
        # literal segments win over templates: /v2/reservation/availability before /{reservation_fid}
        self.operations.sort(key=lambda o: (o.path.count("{"), -len(o.path)))
        self.registry = Registry().with_resource(_URI, Resource(contents=store, specification=DRAFT202012))
        self._validators: dict[str, Draft202012Validator] = {}

    # ----- lookup ----------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Operation | None, dict, list[str]]:
        """The operation for a request, its path parameters, and the methods the path allows."""
        template = next((op.path for op in self.operations if op.regex.match(path)), None)
        same = [op for op in self.operations if op.path == template]
        allowed = sorted(op.method for op in same)
        for op in same:
            if op.method == method:
                return op, {k: unquote(v) for k, v in op.regex.match(path).groupdict().items()}, allowed
        return None, {}, allowed

    def by_id(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)

    def validator(self, ref: str) -> Draft202012Validator:
        v = self._validators.get(ref)
        if v is None:
            v = self._validators[ref] = Draft202012Validator({"$ref": ref}, registry=self.registry)
        return v

    def component(self, name: str) -> Draft202012Validator:
        return self.validator(_pointer("components", "schemas", name))

    # ----- requests --------------------------------------------------------------------------

    def parse_query(self, op: Operation, query: dict[str, list[str]]) -> dict:
        """Typed query parameters; an absent optional one is None. Raises RequestInvalid."""
        values, errors = {}, []
        for p in op.params:
            if p.where != "query":
                continue
            raw = query.get(p.name)
            if not raw:
                if p.required:
                    errors.append({"loc": ["query", p.name], "msg": "Field required", "type": "missing"})
                values[p.name] = p.schema.get("default")
                continue
            try:
                value = _coerce(p, raw)
            except ValueError as e:
                errors.append({"loc": ["query", p.name], "msg": str(e), "type": _parse_type(p.kind)})
                continue
            errs = [_detail(e, ["query", p.name]) for e in self.validator(p.ref).iter_errors(value)]
            errors.extend(errs)
            values[p.name] = value
        if errors:
            raise RequestInvalid(_unique(errors))
        return values

    def check_body(self, op: Operation, body) -> None:
        if op.body_ref is None:
            return
        if body is None:
            if op.body_required:
                raise invalid(["body"], "Field required", "missing")
            return
        errors = [_detail(e, ["body"]) for e in self.validator(op.body_ref).iter_errors(body)]
        if errors:
            raise RequestInvalid(_unique(errors))

    # ----- responses -------------------------------------------------------------------------

    def response_errors(self, op: Operation, status: int, body) -> list[str]:
        """Where an answer departs from the schema (an undocumented error status is fine)."""
        key = str(status)
        if key not in op.responses:
            if 200 <= status < 300:
                return [f"{op.method} {op.path}: status {status} is not documented"]
            return []
        ref = op.responses[key]
        if ref is None:
            return [] if body is None else [f"{op.method} {op.path}: {status} must have no body"]
        return [f"{op.method} {op.path} {status} at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in self.validator(ref).iter_errors(body)]


@lru_cache(maxsize=1)
def default_schema() -> ApiSchema:
    return ApiSchema()


def _coerce(p: Param, raw: list[str]):
    """Query strings to the parameter's JSON type. Arrays take repeats and comma lists alike."""
    if p.kind == "array":
        items = [x for r in raw for x in r.split(",") if x != ""]
        item_kind = (p.schema.get("items") or {}).get("type", "string")
        return [_scalar(item_kind, x) for x in items]
    return _scalar(p.kind, raw[-1])


def _scalar(kind: str, text: str):
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("Input should be a valid integer, unable to parse string as an integer") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError("Input should be a valid number, unable to parse string as a number") from None
    if kind == "boolean":
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError("Input should be a valid boolean, unable to interpret input")
    return text


def _parse_type(kind: str) -> str:
    return {"integer": "int_parsing", "number": "float_parsing", "boolean": "bool_parsing"}.get(kind, "value_error")


_TYPE_ERRORS = {
    "string": ("string_type", "Input should be a valid string"),
    "integer": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
    "array": ("list_type", "Input should be a valid list"),
    "object": ("model_attributes_type", "Input should be a valid dictionary or object to extract fields from"),
}


def _detail(error, prefix: list) -> dict:
    """A jsonschema error in FastAPI's words: ``{"loc", "msg", "type"}``."""
    loc = prefix + list(error.absolute_path)
    kind = error.validator
    if kind == "anyOf" and error.context:
        # "X or null": report why X failed, not the null branch
        real = [e for e in error.context if e.schema != {"type": "null"}]
        if real:
            return _detail(real[0], prefix)
    if kind == "required":
        name = re.match(r"^'(.*)' is a required property$", error.message)
        return {"loc": loc + [name.group(1) if name else "?"], "msg": "Field required", "type": "missing"}
    if kind == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        expected = [t for t in expected if t != "null"] or ["string"]
        type_, msg = _TYPE_ERRORS.get(expected[0], ("type_error", error.message))
        return {"loc": loc, "msg": msg, "type": type_}
    if kind == "enum":
        options = [repr(x) for x in error.validator_value if x is not None]
        msg = "Input should be " + (", ".join(options[:-1]) + " or " + options[-1] if len(options) > 1 else options[0])
        return {"loc": loc, "msg": msg, "type": "enum"}
    words = {
        "minimum": ("greater_than_equal", "Input should be greater than or equal to {}"),
        "exclusiveMinimum": ("greater_than", "Input should be greater than {}"),
        "maximum": ("less_than_equal", "Input should be less than or equal to {}"),
        "exclusiveMaximum": ("less_than", "Input should be less than {}"),
        "minLength": ("string_too_short", "String should have at least {} characters"),
        "maxLength": ("string_too_long", "String should have at most {} characters"),
    }
    if kind in words:
        type_, msg = words[kind]
        return {"loc": loc, "msg": msg.format(error.validator_value), "type": type_}
    return {"loc": loc, "msg": error.message, "type": "value_error"}


def _unique(details: list[dict]) -> list[dict]:
    seen, out = set(), []
    for d in details:
        key = json.dumps(d, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
