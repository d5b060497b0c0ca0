"""The authorization matrix: every route of the app × every kind of caller × a public and a private
repository, with the answer the route's declared rule (service/policy.py `Rule`) demands.

Used by tests/service/test_authorization_matrix.py on both deployments' adapters (SQLite + local
directory; PostgreSQL + S3 + Celery on Redis): both build the same tenants with `make_tenants` and send
requests with any httpx-like client.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from service.accounts import AccountAdmin
from service.auth import Scope
from service.policy import Rule, declared_rule
from service.tokens import CatalogTokenStore
from storage.app.hub import Hub
from storage.app.views import FileAddition

ORG = "acme"
FILE = "a.txt"
CONTENT = b"hello tenants\n"
SHA = hashlib.sha256(CONTENT).hexdigest()
CSRF = "c" * 40

# FastAPI's own documentation routes and the web stylesheet: served to anyone, about nothing stored.
EXEMPT_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/ui/static"}

IDENTITIES = (
    "anonymous",        # no token
    "read_token",       # the organization admin's read-only token
    "other_writer",     # a write token of a user outside the organization
    "member_read",      # a member with the read role (write token)
    "member_write",     # a member with the write role (write token)
    "org_admin",        # a member with the admin role (write token)
    "hub_admin",        # a hub administrator (write token), member of nothing
    "fine_grained_out",  # the write member's fine-grained write token, scoped to another namespace
)
VISIBILITIES = ("public", "private")


@dataclass
class Tenants:
    tokens: dict[str, str]  # identity → token
    initial: dict[tuple[str, str], str]  # (repo type, name) → first commit


def make_tenants(hub: Hub) -> Tenants:
    accounts, store = AccountAdmin(hub.session), CatalogTokenStore(hub.session)
    for user in ("root", "ada", "rita", "will", "eve"):
        accounts.create_user(user, hub_admin=user == "root")
    accounts.create_org(ORG, admin="ada")
    accounts.create_org("elsewhere", admin="will")
    accounts.set_member(ORG, "rita", "read")
    accounts.set_member(ORG, "will", "write")
    tokens = {
        "read_token": store.create("ada-read", can_write=False, user="ada"),
        "other_writer": store.create("eve-write", can_write=True, user="eve"),
        "member_read": store.create("rita-write", can_write=True, user="rita"),
        "member_write": store.create("will-write", can_write=True, user="will"),
        "org_admin": store.create("ada-write", can_write=True, user="ada"),
        "hub_admin": store.create("root-write", can_write=True, user="root"),
        "fine_grained_out": store.create("will-fg", can_write=False, user="will",
                                         scopes=(Scope("elsewhere", None, True),)),
    }
    tenants = Tenants(tokens, {})
    reset(hub, tenants)
    return tenants


def reset(hub: Hub, tenants: Tenants) -> None:
    """Put the two repositories (as a model and as a dataset) back as the matrix expects them."""
    for kind in ("model", "dataset"):
        for visibility in VISIBILITIES:
            repo_id = f"{ORG}/{visibility}"
            for leftover in (f"{ORG}/moved-{visibility}", f"{ORG}/new-{visibility}"):
                if leftover in {r.repo_id for r in hub.list_repos() if r.repo_type == kind}:
                    hub.delete_repo(leftover, repo_type=kind)
            if repo_id not in {r.repo_id for r in hub.list_repos() if r.repo_type == kind}:
                hub.create_repo(repo_id, private=visibility == "private", repo_type=kind)
                info = hub.upload([CONTENT], expected_sha256=SHA, expected_size=len(CONTENT))
                tenants.initial[(kind, visibility)] = hub.commit(
                    repo_id, "main", message="first", additions=[FileAddition(FILE, info.sha256)], repo_type=kind
                ).oid
            hub.set_private(repo_id, visibility == "private", repo_type=kind)
            refs = {r.name: r.kind for r in hub.list_refs(repo_id, repo_type=kind)}
            if "main" not in refs:
                hub.create_branch(repo_id, "main", revision=tenants.initial[(kind, visibility)], repo_type=kind)
            if "v1" in refs:
                hub.delete_tag(repo_id, "v1", repo_type=kind)
            if "topic" in refs:
                hub.delete_branch(repo_id, "topic", repo_type=kind)


def routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route the app serves, as its router tables hold them; anything else but the exempt
    paths fails (a new kind of route must be added here, and to the matrix)."""
    for entry in app.routes:
        nested = getattr(entry, "original_router", None)  # FastAPI >= 0.165 wraps included routers
        for route in nested.routes if nested is not None else [entry]:
            if isinstance(route, APIRoute):
                yield route
            elif isinstance(route, (Mount, Route)) and route.path in EXEMPT_PATHS:
                continue
            else:
                raise AssertionError(f"route {route!r} is neither an API route nor exempt")


def undeclared(app: FastAPI) -> list[str]:
    return [f"{sorted(r.methods)} {r.path} ({r.name})" for r in routes(app) if declared_rule(r.endpoint) is None]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    cookies: dict[str, str]
    content: bytes | None


def call_for(
    route: APIRoute, method: str, visibility: str, repo_name: str | None = None, *, form_token: str = ""
) -> Call:
    """A well-formed request to `route` about repository acme/<repo_name or visibility>."""
    name = repo_name or visibility
    values = {
        "kind": "datasets" if "repoprefix" in route.path else ("model" if route.path.startswith("/ui/") else "models"),
        "namespace": ORG, "name": name, "revision": "main", "path": FILE, "branch": "topic", "tag": "v1",
        "oid": SHA, "sha256": SHA, "prefix": "default", "xorb_hash": "0" * 64, "chunk_hash": "0" * 64,
        "family_id": "1",
    }
    path = route.path_format.replace(":path}", "}")
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    if route.path.startswith("/ui/{kind}"):
        path = path.replace("/ui/models/", "/ui/models/")
    assert "{" not in path, path
    body: Any = None
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    target = f"{ORG}/{name}"
    match route.name:
        case "create_repo":
            body = {"organization": ORG, "name": f"new-{visibility}", "private": visibility == "private"}
        case "delete_repo":
            body = {"organization": ORG, "name": name}
        case "move_repo":
            body = {"fromRepo": target, "toRepo": f"{ORG}/moved-{visibility}"}
        case "repo_settings":
            body = {"private": visibility == "private"}
        case "create_tag":
            body = {"tag": "v1"}
        case "paths_info":
            body = {"paths": [FILE]}
        case "preupload":
            body = {"files": [{"path": "b.txt", "size": 3, "sample": ""}]}
        case "batch":
            body = {"operation": "upload", "objects": [{"oid": "1" * 64, "size": 3}]}
            headers["content-type"] = "application/vnd.git-lfs+json"
        case "info_refs":
            path += "?service=git-upload-pack"
        case "verify":
            body = {"oid": SHA, "size": len(CONTENT)}
        case "commit":
            headers["content-type"] = "application/x-ndjson"
            header = {"key": "header", "value": {"summary": "matrix", "description": ""}}
            return Call(method, path, headers, cookies, (json.dumps(header) + "\n").encode())
        case "put_object":
            path += "?size=3&expires=1&signature=" + "0" * 64
            return Call(method, path, headers, cookies, b"abc")
        case "validate_yaml":
            body = {"content": "", "repoType": "model"}
        case "signin" | "signout":
            cookies["deltahub_csrf"] = CSRF
            headers["content-type"] = "application/x-www-form-urlencoded"
            # Signing in is open to anyone holding a valid token (`form_token`), whoever is signed in.
            return Call(method, path, headers, cookies, f"csrf_token={CSRF}&token={form_token}&next=/".encode())
    content = json.dumps(body).encode() if body is not None else None
    if content is not None and "content-type" not in headers:
        headers["content-type"] = "application/json"
    return Call(method, path, headers, cookies, content)


def expected(rule: Rule, route_name: str, identity: str, visibility: str) -> str:
    """"ok", "401", "403" or "404" (answered exactly as for a repository that does not exist)."""
    anonymous = identity == "anonymous"
    sees_private = identity in ("read_token", "member_read", "member_write", "org_admin", "hub_admin")
    writes = identity in ("member_write", "org_admin", "hub_admin")
    match rule:
        case Rule.PUBLIC | Rule.HUB_READ:
            return "ok"
        case Rule.AUTHENTICATED:
            return "401" if anonymous else "ok"
        case Rule.WRITE_TOKEN:
            return "401" if anonymous else "403" if identity == "read_token" else "ok"
        case Rule.HUB_ADMIN:
            return "401" if anonymous else "ok" if identity == "hub_admin" else "403"
        case Rule.REPO_READ:
            return "ok" if visibility == "public" or sees_private else "404"
        case Rule.GIT_READ:
            if anonymous and visibility == "private":
                return "401"  # challenged, exactly as for a missing repository (tests/service/test_git.py)
            return "ok" if visibility == "public" or sees_private else "404"
        case Rule.REPO_WRITE | Rule.NAMESPACE_WRITE | Rule.LFS_BATCH:  # the matrix's batch is an upload
            if anonymous:
                return "401"
            if identity == "read_token":
                return "403"  # refused before the repository is looked up
            if route_name == "create_repo":
                return "ok" if writes else "403"
            if visibility == "private" and not sees_private:
                return "404"
            return "ok" if writes else "403"
        case Rule.SIGNED_URL | Rule.CAS_TOKEN:
            return "same"  # the caller's token plays no part: the signature or the CAS token decides
    raise AssertionError(rule)


Send = Callable[[Call, str | None], Any]


def auth_for(call: Call, token: str | None) -> Call:
    """The caller's token where the route reads it: the bearer header, or the web pages' session cookie."""
    if token is None:
        return call
    if call.path == "/" or call.path.startswith("/ui/"):
        return Call(call.method, call.path, call.headers, {**call.cookies, "deltahub_session": token}, call.content)
    return Call(call.method, call.path, {**call.headers, "authorization": f"Bearer {token}"}, call.cookies,
                call.content)


REPO_PAGES = ("repository", "file_page")


def is_repo_missing(route_name: str, response: Any) -> bool:
    if response.status_code != 404:
        return False
    if response.headers.get("x-error-code") == "RepoNotFound":
        return True
    return route_name in REPO_PAGES and "text/html" in response.headers.get("content-type", "")


def verdict(route_name: str, response: Any) -> str:
    if response.status_code in (401, 403):
        return str(response.status_code)
    if is_repo_missing(route_name, response):
        return "404"
    return "ok"


def same_as_missing(denied: Any, missing: Any, visibility: str) -> bool:
    """A denied private repository answers as a missing one: status, error code, and (JSON) body with
    the repository's name in place of the missing one's."""
    if (denied.status_code, denied.headers.get("x-error-code")) != (
        missing.status_code, missing.headers.get("x-error-code")
    ):
        return False
    if "json" not in denied.headers.get("content-type", ""):
        return True  # pages carry a per-visitor CSRF token; their status and template are what matter
    return bool(denied.text == missing.text.replace("missing", visibility))
