"""Emulator core: routing, knobs, fault injection, call counters, control API."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    truncate: bool = False  # announce the full length, send half, close

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        self.headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode()


def json_response(status: int, body: Any, **headers: str) -> Response:
    return Response(status, body, dict(headers))


@dataclass
class Fault:
    """Answer the next `count` calls of `route` (a counter name, or "*") with a fault.

    kind: "status" (HTTP `status`, with Retry-After when `retry_after` is set),
    "drop" (close the connection), "truncate" (the next answer of the route
    stops half-way through its body), "expire_token" (revoke every access token
    first, so the call meets a 401), "expire_link" (a presigned URL answers
    403 "Request has expired"), "corrupt" (the answer's full length arrives with
    bytes flipped in the middle, so a gzip or zip body fails its checksum),
    "redirect" (302 to the same path on another host name, `localhost`, served
    by this emulator too, so credentials that follow it are seen arriving),
    "html" (HTTP 200 with an HTML page, as a captive portal or proxy answers).
    `after` lets that many calls pass first, for a fault in the middle of a run.
    """

    route: str
    kind: str = "status"
    status: int = 500
    count: int = 1
    retry_after: float | None = None
    after: int = 0

    def hits(self, route: str, grpc: bool) -> bool:
        """Whether this call of `route` meets the fault; uses one of `after`, then of `count`."""
        if (self.kind == "grpc") != grpc or self.route not in (route, "*") or self.count <= 0:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        self.count -= 1
        return True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)


Handler = Callable[[Request], Response]

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Service temporarily moved</h1></body></html>"


def corrupted(response: Response) -> Response:
    """The same answer, its length unchanged, with bytes flipped in the middle of the body."""
    payload = bytearray(response.payload())
    middle = len(payload) // 2
    for index in range(middle, min(middle + 16, len(payload))):
        payload[index] ^= 0xFF
    response.body = bytes(payload)
    return response


class Emulator:
    """The emulated APIs. Use as a context manager; `base_url` is its address."""

    def __init__(self, *, port: int = 0, knobs: dict[str, Any] | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self.knobs: dict[str, Any] = {
            "latency_seconds": 0.0,  # added to every request
            "token_ttl_seconds": 3600,
        }
        self.knobs.update(knobs or {})
        self.faults: list[Fault] = []
        self._buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self.signing_key = secrets.token_bytes(16)
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (client_id, expiry)
        self.requests_seen: list[tuple[str, str, dict[str, str]]] = []
        self.requested_port = port  # 0: any free port (tests); fixed: the CLI's
        self._server = ThreadingHTTPServer((LOOPBACK, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], None]] = []
        self.sources: dict[str, Any] = {}
        self._register_control_routes()
        self._install_sources()

    # -- lifecycle -----------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for close in reversed(self._closers):
            close()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def on_stop(self, close: Callable[[], None]) -> None:
        self._closers.append(close)

    def _install_sources(self) -> None:
        # Each source module adds its routes and data; imported here to keep one entry point.
        from tap_ad_invoices.emulator import amazon_ads, lwa

        lwa.install(self)
        self.sources["amazon_ads"] = amazon_ads.install(self)
        for module_name in ("google_ads", "amazon_business", "meta"):
            module = _optional_source(module_name)
            if module is not None:
                self.sources[module_name] = module.install(self)

    # -- routing -------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._routes.append((method, re.compile(f"^{pattern}$"), name, handler))
            return handler

        return register

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def dispatch(self, request: Request) -> Response:
        latency = float(self.knobs.get("latency_seconds") or 0)
        if latency:
            time.sleep(latency)
        for method, pattern, name, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.match(request.path)
            if match is None:
                continue
            request.match = match
            if not name.startswith("_"):
                self.count(name)
                with self.lock:
                    self.requests_seen.append((name, request.path, dict(request.headers)))
                throttled = self.throttle(name)
                if throttled is not None:
                    return throttled
                fault = self.take_fault(name)
                if fault is not None:
                    if fault.kind == "expire_token":
                        self.revoke_tokens()
                    elif fault.kind == "drop":
                        return Response(drop=True)
                    elif fault.kind == "truncate":
                        response = handler(request)
                        response.truncate = True
                        return response
                    elif fault.kind == "corrupt":
                        return corrupted(handler(request))
                    elif fault.kind == "redirect":
                        return self.redirect_elsewhere(request)
                    elif fault.kind == "html":
                        return Response(200, HTML_PAGE, {"Content-Type": "text/html"})
                    elif fault.kind == "status":
                        headers = {}
                        if fault.retry_after is not None:
                            headers["Retry-After"] = f"{fault.retry_after:g}"
                        return json_response(
                            fault.status,
                            {"code": "InjectedFault", "details": f"emulated HTTP {fault.status}"},
                            **headers,
                        )
                    elif fault.kind == "expire_link":
                        return Response(
                            403,
                            b"<Error><Code>AccessDenied</Code>"
                            b"<Message>Request has expired</Message></Error>",
                            {"Content-Type": "application/xml"},
                        )
            return handler(request)
        return json_response(404, {"code": "NotFound", "details": f"no route {request.path}"})

    def redirect_elsewhere(self, request: Request) -> Response:
        query = urlencode({k: v for k, v in request.query.items()}, doseq=True)
        target = f"http://localhost:{self.port}{request.path}" + (f"?{query}" if query else "")
        return Response(302, b"", {"Location": target})

    def throttle(self, route: str) -> Response | None:
        """Server-side token buckets: knob rate_limits = {route: [rate_per_second, burst]}."""
        limits = (self.knobs.get("rate_limits") or {}).get(route)
        if not limits:
            return None
        rate, burst = float(limits[0]), float(limits[1])
        now = time.monotonic()
        with self.lock:
            tokens, updated = self._buckets.get(route, (burst, now))
            tokens = min(burst, tokens + (now - updated) * rate)
            if tokens >= 1:
                self._buckets[route] = (tokens - 1, now)
                return None
            self._buckets[route] = (tokens, now)
            self.count(f"{route}.throttled")
        wait = (1 - tokens) / rate
        return json_response(
            429,
            {
                "code": "QuotaExceeded",
                "details": "You exceeded your quota for the requested resource.",
            },
            **{"Retry-After": f"{wait:.3f}", "x-amzn-RateLimit-Limit": f"{rate:g}"},
        )

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.hits(route, grpc=False):
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    # -- access tokens (shared by every token endpoint) -----------------------------
    def mint_token(self, client_id: str, prefix: str) -> tuple[str, int]:
        ttl = int(self.knobs.get("token_ttl_seconds", 3600))
        token = f"{prefix}{secrets.token_urlsafe(24)}"
        with self.lock:
            self.access_tokens[token] = (client_id, time.monotonic() + ttl)
        return token, ttl

    def token_client(self, authorization: str | None) -> str | None:
        """The client id a bearer token was minted for, if it is still valid."""
        if not authorization:
            return None
        token = authorization.split(" ", 1)[1] if " " in authorization else authorization
        with self.lock:
            entry = self.access_tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def revoke_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    # -- presigned URLs ------------------------------------------------------------
    def presign(self, path: str, ttl_seconds: float) -> str:
        expires = int(time.time() + ttl_seconds)
        signature = hmac.new(self.signing_key, f"{path}:{expires}".encode(), hashlib.sha256)
        return (
            f"{self.base_url}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={int(ttl_seconds)}"
            f"&X-Amz-Date={expires}&X-Amz-Signature={signature.hexdigest()}"
        )

    def refuse_presigned(self, request: Request) -> Response | None:
        """S3's answer to a presigned download that must fail, or None when it is fine."""
        if "authorization" in request.headers or "x-amz-access-token" in request.headers:
            return Response(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth "
                b"mechanism allowed</Message></Error>",
            )
        if not self.presigned_ok(request):
            return Response(
                403,
                b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            )
        return None

    def presigned_ok(self, request: Request) -> bool:
        expires = request.param("X-Amz-Date") or "0"
        given = request.param("X-Amz-Signature") or ""
        signature = hmac.new(self.signing_key, f"{request.path}:{expires}".encode(), hashlib.sha256)
        return hmac.compare_digest(given, signature.hexdigest()) and int(expires) >= time.time()

    # -- control API ---------------------------------------------------------------
    def _register_control_routes(self) -> None:
        @self.route("GET", "/_emulator/counters", "_counters")
        def counters(_: Request) -> Response:
            with self.lock:
                return json_response(200, dict(self.counters))

        @self.route("POST", "/_emulator/reset_counters", "_reset")
        def reset(_: Request) -> Response:
            with self.lock:
                self.counters.clear()
                self.requests_seen.clear()
            return json_response(200, {})

        @self.route("POST", "/_emulator/knobs", "_knobs")
        def knobs(request: Request) -> Response:
            with self.lock:
                self.knobs.update(request.json())
            return json_response(200, self.knobs)

        @self.route("POST", "/_emulator/faults", "_faults")
        def faults(request: Request) -> Response:
            for item in request.json():
                self.add_fault(Fault.from_dict(item))
            return json_response(200, {})

        @self.route("GET", "/_emulator/truth/(?P<source>[a-z_]+)", "_truth")
        def truth(request: Request) -> Response:
            assert request.match is not None
            source = self.sources.get(request.match["source"])
            if source is None:
                return json_response(404, {})
            return json_response(200, json.loads(json.dumps(source.truth(), default=str)))

        @self.route("POST", "/_emulator/mutate/(?P<source>[a-z_]+)", "_mutate")
        def mutate(request: Request) -> Response:
            assert request.match is not None
            source = self.sources.get(request.match["source"])
            if source is None:
                return json_response(404, {})
            return json_response(
                200, json.loads(json.dumps(source.mutate(request.json()), default=str))
            )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this every loopback call
            # waits ~40 ms for a delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                try:
                    response = emulator.dispatch(request)
                    payload = response.payload()
                except Exception as exc:  # a bug in the emulator must look like a 500
                    response = json_response(500, {"code": "EmulatorError", "details": repr(exc)})
                    payload = response.payload()
                if response.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if response.truncate:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()
                    return
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        return _Handler


def _optional_source(name: str) -> Any:
    """Sources added by later work register themselves if their module exists."""
    import importlib

    try:
        return importlib.import_module(f"tap_ad_invoices.emulator.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tap_ad_invoices.emulator.{name}":
            raise
        return None
