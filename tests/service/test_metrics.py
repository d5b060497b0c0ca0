"""The operator's instruments against a real server: /metrics, /healthz, /readyz and the request log."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import pytest
from huggingface_hub import HfApi
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from service.metrics import Instruments, JsonFormatter, RequestInstruments, ingest_rate, masked
from storage.app.gitattributes import default_gitattributes
from storage.catalog.browse import Totals
from tests.models import make_weights, to_safetensors
from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService
from workers.jobs.gc import collect_garbage


def scrape(service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = service.http.get("/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_a_token(ingesting_service: RunningService) -> None:
    assert ingesting_service.http.get("/metrics").status_code == 401
    assert ingesting_service.http.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_metrics_count_requests_by_route_template_and_the_catalog(ingesting_service: RunningService) -> None:
    service = ingesting_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    data = to_safetensors(make_weights(3))
    api.create_repo("org/metered")
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id="org/metered")
    service.hub.queue.wait(60)  # type: ignore[union-attr]
    for _ in range(3):
        assert service.http.get("/org/metered/resolve/main/model.safetensors").content == data
    assert service.http.get("/org/no-such/resolve/main/x").status_code == 404
    service.app.state.instruments.catalog._cached = None  # the upload happened within the TTL
    m = scrape(service)
    route = "/{namespace}/{name}/resolve/{revision}/{path:path}"
    assert m[("deltahub_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 3
    assert m[("deltahub_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] == 1
    assert m[("deltahub_http_response_bytes_total", (("route", route),))] >= 3 * len(data)
    assert m[("deltahub_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == 4
    # The upload's bytes came in (as xorbs, compressed, with the client's default; the route is whatever
    # the client used).
    sent = service.counters()["xet_xorb_bytes"] + service.counters()["lfs_put_bytes"]
    assert sent > 0
    assert sum(v for (name, _), v in m.items() if name == "deltahub_http_request_bytes_total") >= sent
    # No raw paths as labels: a scrape stays small however many repositories exist.
    assert not any("org/metered" in str(labels) for _, labels in m)
    totals = service.hub.browse.totals()
    # The file, and the repository's initial .gitattributes.
    attributes = len(default_gitattributes("model"))
    assert m[("deltahub_logical_bytes", ())] == totals.logical_bytes == len(data) + attributes
    assert m[("deltahub_physical_bytes", ())] == totals.physical_bytes
    assert m[("deltahub_ingest_jobs", (("state", "done"),))] == 2  # the file and the initial .gitattributes
    assert m[("deltahub_ingest_queue_depth", ())] == 0
    assert m[("deltahub_ingest_recent_bytes_per_second", ())] > 0
    assert m[("deltahub_integrity_errors_total", ())] == 0
    assert m[("deltahub_gc_reclaimable_bytes", ())] == 0


def test_metrics_count_the_work_of_ingest_and_gc(ingesting_service: RunningService) -> None:
    service = ingesting_service
    before = scrape(service)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    data = to_safetensors(make_weights(4))
    api.create_repo("org/counted")
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id="org/counted")
    service.hub.queue.wait(60)  # type: ignore[union-attr]
    api.delete_repo("org/counted")
    gc = collect_garbage(service.hub, grace_seconds=0)
    assert gc.bytes_freed > 0
    service.app.state.instruments.catalog._cached = None
    after = scrape(service)

    def grew(name: str, *labels: tuple[str, str]) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    # Two jobs: the file and the repository's initial .gitattributes.
    assert grew("deltahub_ingest_attempts_total", ("outcome", "done")) == 2
    assert grew("deltahub_ingest_job_duration_seconds_count") == 2
    assert grew("deltahub_ingest_job_duration_seconds_bucket", ("le", "+Inf")) == 2
    assert grew("deltahub_ingest_job_duration_seconds_sum") > 0
    assert grew("deltahub_ingest_bytes_total") == len(data) + len(default_gitattributes("model"))
    assert grew("deltahub_gc_runs_total") == 1
    assert grew("deltahub_gc_freed_bytes_total") == gc.bytes_freed
    assert grew("deltahub_gc_deleted_objects_total") == len(gc.deleted_keys)
    # Buckets are cumulative: each bound counts at least what the one below it does.
    bounds = sorted(
        (float(dict(labels)["le"]), value) for (name, labels), value in after.items()
        if name == "deltahub_ingest_job_duration_seconds_bucket"
    )
    assert [v for _, v in bounds] == sorted(v for _, v in bounds)


def test_catalog_gauges_cost_a_few_queries_per_ttl_not_per_scrape(ingesting_service: RunningService) -> None:
    service = ingesting_service
    collector = service.app.state.instruments.catalog
    collector._cached = None
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(service.hub.engine, "before_cursor_execute", listener)
    try:
        for _ in range(5):
            scrape(service)
    finally:
        event.remove(service.hub.engine, "before_cursor_execute", listener)
    assert collector.refreshes >= 1
    # One refresh: the totals' aggregates, the work counters (one small table) and the recent-ingest
    # query, plus one token check per scrape at most (static tokens need none); never one query per
    # repository or file.
    assert len(statements) <= 10, statements


def test_liveness_and_readiness(ingesting_service: RunningService) -> None:
    http = ingesting_service.http
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "catalog": True, "store": True}
    assert http.get("/api/v1/health").status_code == 200


def test_readiness_fails_when_the_store_does_not_answer(
    ingesting_service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(key: str) -> None:
        raise OSError("store down")

    monkeypatch.setattr(ingesting_service.hub.store, "head", broken)
    ready = ingesting_service.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["store"] is False
    assert ingesting_service.http.get("/healthz").status_code == 200  # alive: do not restart for this


class Capture(logging.Handler):
    """Records of one logger, taken at the logger itself: whatever another test did to the logging tree
    (handlers replaced, propagation off, a dictConfig that disabled existing loggers), they arrive."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def ids(self) -> set[str]:
        return {r.fields["request_id"] for r in list(self.records)}  # type: ignore[attr-defined]

    def __enter__(self) -> Capture:
        self.saved = (self.logger.level, self.logger.disabled)
        self.logger.setLevel(logging.INFO)
        self.logger.disabled = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.disabled = self.saved[1]


def test_each_request_logs_one_line_with_its_caller_and_never_the_token(ingesting_service: RunningService) -> None:
    service = ingesting_service
    data = b"hello"
    service.hub.create_repo("org/logged")
    with Capture("deltahub.request") as capture:
        response = service.http.get("/api/v1/repos/org/logged", headers={
            "Authorization": f"Bearer {WRITE_TOKEN}", "X-Request-ID": "req-123"})
        service.http.put(f"/api/v1/lfs/objects/{hashlib.sha256(data).hexdigest()}?size=5&expires=1"
                         "&signature=deadbeef", content=data, headers={"X-Request-ID": "req-124"})
        # The server logs a request once its last byte is sent, from its own thread: the client may have
        # the response before the line is written (what made this test flaky), so wait for both lines.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {"req-123", "req-124"} <= capture.ids():
            time.sleep(0.01)
    assert response.headers["x-request-id"] == "req-123"
    # Only this test's two requests, whatever else ran.
    by_id = {r.fields["request_id"]: r for r in capture.records}  # type: ignore[attr-defined]
    first = by_id["req-123"].fields  # type: ignore[attr-defined]
    assert first["caller"] == "alice"
    assert first["repo"] == "org/logged"
    assert first["route"] == "/api/v1/repos/{namespace}/{name}"
    assert first["status"] == 200 and first["duration_ms"] >= 0
    line = JsonFormatter().format(by_id["req-123"])
    assert json.loads(line)["caller"] == "alice"
    upload = by_id["req-124"].fields  # type: ignore[attr-defined]
    assert upload["route"] == "/api/v1/lfs/objects/{oid}" and upload["status"] == 403
    assert upload["path"].endswith("&signature=***")
    for record in capture.records:
        text = JsonFormatter().format(record)
        assert WRITE_TOKEN not in text and "deadbeef" not in text


def test_signatures_and_tokens_are_masked_in_logged_paths() -> None:
    assert masked("/upload/x", "size=5&expires=9&signature=abc") == "/upload/x?size=5&expires=9&signature=***"
    assert masked("/p", "token=secret&a=1") == "/p?token=***&a=1"
    assert masked("/p", "") == "/p"
    assert RequestInstruments.__doc__


def test_ingest_rate() -> None:
    assert ingest_rate([]) == (0.0, 0.0)
    assert ingest_rate([(100, 1.0), (300, 1.0)]) == (200.0, 1.0)


def test_the_catalog_is_not_read_before_the_first_scrape() -> None:
    calls: list[int] = []

    def totals() -> Totals:
        calls.append(1)
        return Totals(0, 0, 0, 0, 0, 0, {})

    instruments = Instruments(totals, lambda: (0.0, 0.0))
    assert calls == []  # registering the collector did not query (and cache) the catalog
    instruments.exposition()
    assert calls == [1]
