"""The operator's instruments: Prometheus metrics and one structured log line per request.

Request metrics are labelled by route template (``/{namespace}/{name}/resolve/{revision}/{path:path}``),
never by the raw path, so a scrape stays small however many repositories exist. Catalog-derived gauges
(logical and physical bytes, jobs by state) come from a few aggregate queries (storage/catalog/browse.py
`totals`), cached for `CATALOG_TTL_SECONDS`: scraping every 5 s costs one set of queries per TTL, never
a catalog scan.

Who may read /metrics: any valid token (read-only tokens included), as a bearer header. The numbers say
how much a hub holds and how busy it is, which an operator may not want public; a scraper holds a
read-only token (`deltahub admin token create prometheus`). Each app has its own registry, so tests and
replicas in one process do not share counters.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.paths import repo_id_from
from storage.app.browse import Totals
from storage.catalog.counters import (
    DURATION_BUCKETS,
    GC_DELETED_OBJECTS,
    GC_FREED_BYTES,
    GC_RUNS,
    INGEST_ATTEMPTS,
    INGEST_BYTES,
    INGEST_DURATION,
    bucket_label,
)

log = logging.getLogger("deltahub.request")

# A scrape every 15 s (Prometheus' default) sees numbers at most this old; ingest takes seconds, so
# fresher would only add queries.
CATALOG_TTL_SECONDS = 10.0
# Seconds: a metadata call takes ms, a multi-GB download minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
INTEGRITY_MESSAGE = "stored data failed an integrity check"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Query values that authorise something: signed upload URLs and tokens some clients put in the URL.
_SECRET_QUERY = re.compile(r"(?i)\b(signature|sig|token|access_token|x-amz-signature|x-amz-credential)=[^&]*")


class CatalogGauges(Collector):
    """Gauges read from the catalog, cached: `totals` runs at most once per `ttl` seconds."""

    def __init__(self, totals: Callable[[], Totals], ingest_rate: Callable[[], tuple[float, float]],
                 ttl: float = CATALOG_TTL_SECONDS) -> None:
        self._totals = totals
        self._rate = ingest_rate
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Totals, tuple[float, float]] | None = None
        self.refreshes = 0

    def describe(self) -> Iterator[Metric]:
        # Without this, registering the collector (auto_describe) calls `collect`, which would query the
        # catalog at startup and serve those numbers, cached, to the scrapes of the first TTL.
        return iter(())

    def _current(self) -> tuple[Totals, tuple[float, float]] | None:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                try:
                    self._cached = (now, self._totals(), self._rate())
                    self.refreshes += 1
                except Exception:
                    log.warning("catalog gauges unavailable", exc_info=True)
                    return None if self._cached is None else (self._cached[1], self._cached[2])
            return self._cached[1], self._cached[2]

    def collect(self) -> Iterator[Metric]:
        current = self._current()
        if current is None:
            return
        totals, (rate, seconds) = current
        for name, doc, value in (
            ("deltahub_logical_bytes", "Bytes uploaded: every file each repository names", totals.logical_bytes),
            ("deltahub_physical_bytes", "Bytes the object store holds (packs, frames, staging)",
             totals.physical_bytes),
            ("deltahub_staged_bytes", "Uploaded bytes waiting for ingest", totals.staged_bytes),
            ("deltahub_gc_reclaimable_bytes", "Store objects no frame references, waiting out GC's grace",
             totals.unreferenced_bytes),
            ("deltahub_repositories", "Repositories", totals.repositories),
            ("deltahub_files", "Distinct files held", totals.files),
            ("deltahub_families", "Model families", totals.families),
            ("deltahub_ingest_queue_depth", "Ingest jobs queued or running",
             totals.jobs.get("queued", 0) + totals.jobs.get("running", 0)),
            ("deltahub_ingest_recent_bytes_per_second",
             "Ingest throughput over the most recent finished jobs (file bytes / seconds from queued to done)", rate),
            ("deltahub_ingest_recent_job_seconds",
             "Mean seconds from queued to done over the most recent finished jobs", seconds),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        jobs = GaugeMetricFamily("deltahub_ingest_jobs", "Ingest jobs by state", labels=["state"])
        for state in ("queued", "running", "done", "failed"):
            jobs.add_metric([state], totals.jobs.get(state, 0))
        yield jobs
        yield from work_done(totals.counters)


def work_done(counts: dict[str, dict[str, float]]) -> Iterator[Metric]:
    """The fleet's work counters (storage/catalog/counters.py): every worker and GC run adds to them in
    the catalog, so this one endpoint counts what other processes and machines did."""
    def total(name: str, label: str = "") -> float:
        return counts.get(name, {}).get(label, 0.0)

    attempts = CounterMetricFamily("deltahub_ingest_attempts", "Ingest attempts by outcome (retry: will run again)",
                                   labels=["outcome"])
    for outcome in ("done", "retry", "failed"):
        attempts.add_metric([outcome], total(INGEST_ATTEMPTS, outcome))
    yield attempts
    yield CounterMetricFamily("deltahub_ingest_bytes", "File bytes of finished ingest jobs",
                              value=total(INGEST_BYTES))
    buckets = counts.get(f"{INGEST_DURATION}_bucket", {})
    yield HistogramMetricFamily(
        "deltahub_ingest_job_duration_seconds", "Seconds an ingest attempt took, for attempts that finished the job",
        buckets=[(bucket_label(b), buckets.get(bucket_label(b), 0.0)) for b in DURATION_BUCKETS]
        + [("+Inf", buckets.get("+Inf", 0.0))],
        sum_value=total(f"{INGEST_DURATION}_sum"),
    )
    for name, doc in ((GC_RUNS, "Garbage collection runs (not dry runs)"),
                      (GC_FREED_BYTES, "Bytes garbage collection deleted from the store"),
                      (GC_DELETED_OBJECTS, "Store objects garbage collection deleted")):
        yield CounterMetricFamily(f"deltahub_{name}", doc, value=total(name))


class Instruments:
    """One app's registry and its request metrics."""

    def __init__(self, totals: Callable[[], Totals], ingest_rate: Callable[[], tuple[float, float]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("deltahub_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("deltahub_http_request_duration_seconds", "Time to the last byte of the response",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.bytes_in = Counter("deltahub_http_request_bytes", "Request body bytes received", ["route"],
                                registry=self.registry)
        self.bytes_out = Counter("deltahub_http_response_bytes", "Response body bytes sent", ["route"],
                                 registry=self.registry)
        self.integrity_errors = Counter("deltahub_integrity_errors",
                                        "Reads refused because stored data failed a checksum", registry=self.registry)
        self.catalog = CatalogGauges(totals, ingest_rate)
        self.registry.register(self.catalog)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    return str(scope.get("state", {}).get("route_template", "unmatched"))


class RouteCapture:
    """Innermost middleware: records the matched route's template and parameters in the request state.

    Outer middleware rewrite the scope into copies (service/paths.py), so the router's match is only
    visible here; the state dict is shared by every copy, so the outer `RequestInstruments` reads it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def capturing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._capture(scope)
            await send(message)

        try:
            await self.app(scope, receive, capturing_send)
        finally:
            self._capture(scope)

    @staticmethod
    def _capture(scope: Scope) -> None:
        state = scope.setdefault("state", {})
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            state["route_template"] = path
            state["path_params"] = dict(scope.get("path_params") or {})
        elif "/static" in str(scope.get("root_path", "")):
            state["route_template"] = str(scope["root_path"]) + "/{file}"


def masked(path: str, query: str) -> str:
    """The request target for a log line, with signatures and tokens in the query replaced by ***."""
    return path + ("?" + _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", query) if query else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers (Loki, CloudWatch, Elastic) index without parsing."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """`json`: every deltahub and uvicorn line as a JSON object on stderr; `text`: unchanged."""
    if log_format != "json":
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    for name in ("", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = name == ""
    logging.getLogger("uvicorn.access").disabled = True  # our request line replaces it
    logging.getLogger().setLevel(level)


class RequestInstruments:
    """ASGI middleware: counts and times each request, measures bytes both ways, logs one line.

    The caller's token name (set on ``request.state.caller`` by the auth dependency) and the repository
    (from the matched route's parameters) are read after the app ran; the token itself never is.
    """

    def __init__(self, app: ASGIApp, instruments: Instruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header_id = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = header_id if _REQUEST_ID.match(header_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        bytes_in = bytes_out = 0
        integrity = False

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out, integrity
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                integrity = any(k.lower() == b"x-error-message" and v.startswith(INTEGRITY_MESSAGE.encode())
                                for k, v in headers)
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception as err:
            integrity = integrity or INTEGRITY_MESSAGE in str(err)
            raise
        finally:
            self._record(scope, request_id, status, bytes_in, bytes_out, time.perf_counter() - started, integrity)

    def _record(self, scope: Scope, request_id: str, status: int, bytes_in: int, bytes_out: int, seconds: float,
                integrity: bool) -> None:
        route, method = route_template(scope), scope["method"]
        m = self.instruments
        m.requests.labels(method, route, str(status)).inc()
        m.latency.labels(method, route).observe(seconds)
        m.bytes_in.labels(route).inc(bytes_in)
        m.bytes_out.labels(route).inc(bytes_out)
        if integrity:
            m.integrity_errors.inc()
        if route == "/metrics":
            return  # a scrape every few seconds would drown the log
        params = scope.get("state", {}).get("path_params") or {}
        repo = repo_id_from(params) if "namespace" in params and "name" in params else None
        fields = {
            "request_id": request_id, "method": method, "route": route,
            "path": masked(scope.get("path", ""), scope.get("query_string", b"").decode("latin-1")),
            "status": status, "duration_ms": round(seconds * 1000, 2), "bytes_in": bytes_in, "bytes_out": bytes_out,
            "caller": scope.get("state", {}).get("caller"), "repo": repo or None,
        }
        log.info("%s %s %s", method, route, status, extra={"fields": fields})


def ingest_rate(recent: Iterable[tuple[int, float]]) -> tuple[float, float]:
    """(bytes per second, mean seconds) over (file bytes, seconds) of recently finished jobs."""
    rows = list(recent)
    seconds = sum(s for _, s in rows)
    if not rows or seconds <= 0:
        return 0.0, 0.0
    return sum(b for b, _ in rows) / seconds, seconds / len(rows)
