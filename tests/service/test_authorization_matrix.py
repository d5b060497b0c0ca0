"""The authorization matrix on the embedded deployment: every route the app serves (taken from its route
table, so a new route is covered the day it is added) × every kind of caller × a public and a private
repository, checked against the rule the route declares.

A route without a declared rule fails `test_every_route_declares_its_policy`. A private repository must
answer exactly as a missing one to whoever may not read it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from service.app import create_app
from service.options import ServiceOptions
from service.policy import Rule, declared_rule
from service.tokens import CatalogTokenStore
from storage.app.hub import Hub
from storage.objectstore.s3 import S3ObjectStore
from storage.settings import load_settings
from tests.service.authz import (
    IDENTITIES,
    VISIBILITIES,
    Call,
    Tenants,
    auth_for,
    call_for,
    expected,
    make_tenants,
    reset,
    routes,
    same_as_missing,
    undeclared,
    verdict,
)
from workers.celery_queue import CeleryQueue

WRITE_RULES = (Rule.REPO_WRITE, Rule.NAMESPACE_WRITE, Rule.WRITE_TOKEN)


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def matrix_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Hub, FastAPI, Tenants]]:
    """The embedded deployment's adapters (SQLite, a local directory) and the distributed one's
    (PostgreSQL, the S3 server, a Celery queue on Redis): the rules must not depend on them."""
    data_dir = tmp_path_factory.mktemp("matrix")
    if request.param == "embedded":
        settings = load_settings(data_dir=data_dir)
        hub = Hub.from_settings(settings, migrate=True)
    else:
        hub = request.getfixturevalue("distributed_matrix_hub")
        settings = hub.settings
    tenants = make_tenants(hub)
    app = create_app(hub, settings, CatalogTokenStore(hub.session), options=ServiceOptions())
    yield hub, app, tenants
    if request.param == "embedded":
        hub.close()  # the distributed hub's own fixture closes it and drops its database


@pytest.fixture(scope="module")
def distributed_matrix_hub(
    pg_admin_url: URL, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    name = f"dh_matrix_{secrets.token_hex(6)}"
    dsn = pg_admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("matrix-distributed"),
        database_url=pg_admin_url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False),
        store_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket=f"matrix-{secrets.token_hex(6)}",
        s3_access_key_id="testing", s3_secret_access_key="testing",
        broker_url=os.environ.get("DELTAHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    hub = Hub.from_settings(settings, migrate=True,
                            queue_for=lambda h: CeleryQueue(h.settings, h.session, queue="deltahub-matrix"))
    assert isinstance(hub.store, S3ObjectStore)
    hub.store.create_bucket()
    try:
        yield hub
    finally:
        hub.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def send(client: TestClient, call: Call) -> object:
    client.cookies.clear()
    for key, value in call.cookies.items():
        client.cookies.set(key, value)
    return client.request(call.method, call.path, headers=call.headers, content=call.content, follow_redirects=False)


def test_every_route_declares_its_policy(matrix_hub: tuple[Hub, FastAPI, Tenants]) -> None:
    _, app, _ = matrix_hub
    assert undeclared(app) == []
    # The table is really walked: the routes the clients depend on are in it.
    names = {r.name for r in routes(app)}
    assert {"resolve_file", "tree", "batch", "write_token", "upload_shard", "stats", "repository"} <= names


def test_a_route_without_a_policy_fails_the_matrix(matrix_hub: tuple[Hub, FastAPI, Tenants]) -> None:
    hub, _, _ = matrix_hub
    app = create_app(hub, hub.settings, CatalogTokenStore(hub.session), options=ServiceOptions())

    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert undeclared(app) == ["['GET'] /api/v1/forgotten (forgotten)"]


def _cases(app: FastAPI) -> list[tuple[str, str, str]]:
    return [(route.path, method, route.name) for route in routes(app) for method in sorted(route.methods)]


def test_the_matrix(matrix_hub: tuple[Hub, FastAPI, Tenants]) -> None:
    """One test over every cell, so the tenants are built once; failures are listed all together."""
    hub, app, tenants = matrix_hub
    wrong: list[str] = []
    cells = 0
    with TestClient(app) as client:
        for route in routes(app):
            rule = declared_rule(route.endpoint)
            assert rule is not None
            for method in sorted(route.methods):
                for visibility in VISIBILITIES:
                    answers: dict[str, tuple[int, str]] = {}
                    for identity in IDENTITIES:
                        token = tenants.tokens.get(identity)
                        call = call_for(route, method, visibility, form_token=tenants.tokens["member_read"])
                        response = send(client, auth_for(call, token))
                        cells += 1
                        got, want = verdict(route.name, response), expected(rule, route.name, identity, visibility)
                        answers[identity] = (response.status_code, response.text)
                        where = f"{method} {route.path} [{rule}] {identity} on {visibility}"
                        if want == "same":
                            pass
                        elif got != want:
                            answer = f"{response.status_code} {response.text[:160]!r}"
                            wrong.append(f"{where}: {want} expected, got {answer}")
                        elif want == "404":
                            missing = send(client, auth_for(call_for(route, method, visibility, "missing"), token))
                            if not same_as_missing(response, missing, visibility):
                                wrong.append(f"{where}: answers unlike a missing repository: "
                                             f"{response.status_code} {response.text[:120]} vs "
                                             f"{missing.status_code} {missing.text[:120]}")
                        if rule in WRITE_RULES and got == "ok":
                            reset(hub, tenants)
                    if expected(rule, route.name, "anonymous", visibility) == "same":
                        statuses = {status for status, _ in answers.values()}
                        if len(statuses) != 1 or statuses & {200, 201, 204}:
                            wrong.append(f"{method} {route.path} [{rule}] on {visibility}: the caller's token must "
                                         f"neither matter nor pass: {answers}")
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong)
    assert cells >= 8 * 2 * 50


def test_a_hub_closed_to_anonymous_reading(matrix_hub: tuple[Hub, FastAPI, Tenants]) -> None:
    """DELTAHUB_ANONYMOUS_READ=false: every route that reads (a listing, a repository, a page) answers an
    anonymous caller 401, public repositories included; any valid token reads public ones as before, and
    the routes about nothing stored stay open."""
    hub, _, tenants = matrix_hub
    closed = create_app(hub, hub.settings, CatalogTokenStore(hub.session), options=ServiceOptions(anonymous_read=False))
    wrong: list[str] = []
    checked = 0
    with TestClient(closed) as client:
        for route in routes(closed):
            rule = declared_rule(route.endpoint)
            for method in sorted(route.methods):
                call = call_for(route, method, "public", form_token=tenants.tokens["member_read"])
                anonymous = send(client, call)
                got = f"{anonymous.status_code}"
                if rule in (Rule.HUB_READ, Rule.REPO_READ):
                    checked += 1
                    if anonymous.status_code != 401:
                        wrong.append(f"{method} {route.path} [{rule}] anonymous: 401 expected, got {got}")
                    reader = send(client, auth_for(call, tenants.tokens["other_writer"]))
                    if verdict(route.name, reader) != "ok":
                        wrong.append(f"{method} {route.path} [{rule}] another user's token: ok expected, "
                                     f"got {reader.status_code}")
                elif rule == Rule.PUBLIC and verdict(route.name, anonymous) != "ok":
                    wrong.append(f"{method} {route.path} [{rule}] anonymous: ok expected, got {got}")
    assert checked >= 20
    assert not wrong, "\n".join(wrong)
