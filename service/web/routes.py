"""The web pages: the hub's totals, repositories, a repository, a file, families, the ingest queue.

Pages are thin like the API routes: read from the hub's browse use cases, filter with the access rule the
API uses (service/auth.py), render a template. Everything lives under /ui except the home page, so no
page can shadow a Hugging Face route ("/{namespace}/{name}/resolve/...").
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.auth import TokenInfo
from service.deps import StateDep
from service.errors import Unauthorized
from service.policy import Policy, Rule, policy
from service.web import charts
from service.web.render import environment, front_matter, human_bytes, model_card_html
from service.web.session import CSRF_FIELD, checked_form, csrf_token, page_caller, remember_csrf, sign_in, sign_out
from storage.app.browse import EntryStorage, FamilyMember, Location
from storage.app.hub import HubApi
from storage.core.errors import NotFound

router = APIRouter(include_in_schema=False)
templates = environment()

REPO_TYPES = ("model",)  # datasets join with their own change; every page takes the type from the URL
SORTS = {"updated": "Recently updated", "size": "Largest", "savings": "Most saved", "name": "Name"}
JOB_STATES = ("queued", "running", "failed")
# A picture of more boxes than this is unreadable; the rest collapse into "+N more" boxes to click.
LINEAGE_MAX_NODES = 60
LINEAGE_MAX_CHILDREN = 12
MEMBERS_PAGE = 50
COMMITS_SHOWN = 20


# The storage report reads every tensor row: people reloading the home page share one per interval.
REPORT_TTL_SECONDS = 10.0


class StorageReport:
    """The hub's storage report, computed at most once per `ttl` seconds for all visitors."""

    def __init__(self, ttl: float = REPORT_TTL_SECONDS) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, object]] | None = None

    def get(self, hub: HubApi) -> dict[str, object]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                self._cached = (now, hub.stats())
            return self._cached[1]


def get_page_caller(request: Request, state: StateDep) -> TokenInfo | None:
    return page_caller(request, state.tokens)


PageCallerDep = Annotated[TokenInfo | None, Depends(get_page_caller)]


def page(request: Request, caller: TokenInfo | None, template: str, status: int = 200, **context: Any) -> Response:
    html = templates.get_template(template).render(
        request=request, caller=caller, csrf_field=CSRF_FIELD, csrf=csrf_token(request), repo_url=repo_url,
        file_url=file_url, **context,
    )
    response = HTMLResponse(html, status_code=status)
    remember_csrf(request, response)
    # Pages embed nothing from elsewhere and run no script: say so, so an injected one would not run.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data: https:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def not_found(request: Request, caller: TokenInfo | None, what: str) -> Response:
    return page(request, caller, "not_found.html", status=404, what=what)


def repo_url(repo_id: str, kind: str = "model", **query: str) -> str:
    url = f"/ui/{kind}s/{quote(repo_id, safe='/')}"
    return f"{url}?{urlencode(query)}" if query else url


def file_url(repo_id: str, revision: str, path: str, kind: str = "model") -> str:
    return f"/ui/{kind}s/{quote(repo_id, safe='/')}/blob/{quote(revision, safe='')}/{quote(path, safe='/')}"


def visible_locations(locations: Sequence[Location], caller: TokenInfo | None, rules: Policy) -> list[Location]:
    return [loc for loc in locations if rules.may_read(caller, loc.repo_id, private=loc.private)]


def closed(request: Request, caller: TokenInfo | None, rules: Policy) -> Response | None:
    """The sign-in page (401) for an anonymous visitor of a hub closed to anonymous reading."""
    try:
        rules.let_in(caller)
    except Unauthorized:
        return page(request, caller, "signin.html", status=401, next=_local(request.url.path),
                    message="This hub is open to signed-in users only: sign in with a token.")
    return None


@router.get("/", response_class=HTMLResponse)
@policy(Rule.HUB_READ)
def home(request: Request, state: StateDep, caller: PageCallerDep) -> Response:
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    report = cast(StorageReport, request.app.state.web_report).get(state.hub)
    savings = {k: int(v) for k, v in dict(report["savings"]).items()}  # type: ignore[call-overload]
    logical, physical = int(report["logical_bytes"]), int(report["physical_bytes"])  # type: ignore[call-overload]
    slices = charts.savings_slices(physical, savings)
    repos = [r for r in state.hub.browse.repositories()
             if state.policy.may_read(caller, r.repo_id, private=r.private)]
    recent = sorted(repos, key=lambda r: r.updated_at, reverse=True)[:6]
    return page(
        request, caller, "home.html", logical=logical, physical=physical, saved=logical - physical,
        slices=slices, chart=charts.savings_bar(slices), savings=savings, recent=recent,
        families=len(report["families"]),  # type: ignore[arg-type]
        repo_count=len(repos),
    )


@router.get("/ui/repos", response_class=HTMLResponse)
@policy(Rule.HUB_READ)
def repositories(
    request: Request, state: StateDep, caller: PageCallerDep,
    q: Annotated[str, Query(max_length=200)] = "", sort: str = "updated", type: str = "all",
) -> Response:
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    rows = [r for r in state.hub.browse.repositories()
            if state.policy.may_read(caller, r.repo_id, private=r.private)]
    if q:
        needle = q.lower()
        rows = [r for r in rows if needle in r.repo_id.lower()]
    if type not in ("all", *REPO_TYPES):
        type = "all"
    sort = sort if sort in SORTS else "updated"
    keys = {
        "updated": lambda r: (r.updated_at.timestamp(),),
        "size": lambda r: (r.logical_bytes,),
        "savings": lambda r: (r.logical_bytes - r.stored_bytes,),
    }
    if sort == "name":
        rows.sort(key=lambda r: r.repo_id.lower())
    else:
        rows.sort(key=keys[sort], reverse=True)
    return page(request, caller, "repos.html", rows=rows, q=q, sort=sort, sorts=SORTS, type=type,
                types=REPO_TYPES)


def _storage_label(entry: EntryStorage, names: dict[str, str]) -> tuple[str, str]:
    """(how, detail) for a file: delta against which base, dedup, plain, or staged as uploaded."""
    f = entry.file
    if f.state == "staged":
        return "staged", "waiting for ingest, served as uploaded"
    if f.state == "failed":
        return "failed", f.error or "ingest failed"
    if f.base_sha256:
        return "delta", f"against {names.get(f.base_sha256, 'a private file')}"
    if f.shared_by:
        return "dedup", f"same bytes in {f.shared_by} other repositor{'y' if f.shared_by == 1 else 'ies'}"
    return "plain", "compressed alone"


def _base_names(state: StateDep, files: Sequence[EntryStorage], caller: TokenInfo | None) -> dict[str, str]:
    bases = {e.file.base_sha256 for e in files if e.file.base_sha256}
    names: dict[str, str] = {}
    for sha, locs in state.hub.browse.locations(bases).items():
        shown = visible_locations(locs, caller, state.policy)
        if shown:
            names[sha] = f"{shown[0].repo_id}/{shown[0].path}"
    return names


@router.get("/ui/{kind}s/{namespace}/{name}", response_class=HTMLResponse)
@policy(Rule.REPO_READ)
def repository(
    request: Request, state: StateDep, caller: PageCallerDep, kind: str, namespace: str, name: str,
    rev: str = "main",
) -> Response:
    repo_id = f"{namespace}/{name}"
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    if kind not in REPO_TYPES:
        return not_found(request, caller, "page")
    try:
        repo = state.policy.readable_repo(state.hub, repo_id, caller)
        branches = state.hub.list_branches(repo.repo_id)
        if not branches:
            return page(request, caller, "repo.html", repo=repo, kind=kind, empty=True, branches={}, rev=rev)
        head = state.hub.resolve(repo.repo_id, rev)
    except NotFound:
        return not_found(request, caller, "repository")
    files = state.hub.browse.tree(repo.repo_id, head.oid)
    names = _base_names(state, files, caller)
    rows = [(e, *_storage_label(e, names)) for e in files]
    card = next((e for e in files if e.path.lower() == "readme.md"), None)
    card_text = state.hub.browse.text(card.file.sha256, card.file.size) if card is not None else None
    commits = state.hub.list_commits(repo.repo_id, head.oid)[:COMMITS_SHOWN]
    logical = sum(e.file.size for e in files)
    stored = sum(e.file.stored_bytes for e in files)
    return page(
        request, caller, "repo.html", repo=repo, kind=kind, empty=False, rev=rev, head=head, branches=branches,
        rows=rows, card=model_card_html(card_text) if card_text else None,
        meta=front_matter(card_text) if card_text else {}, commits=commits, logical=logical, stored=stored,
        families=sorted({e.file.family_id for e in files if e.file.family_id is not None}),
        base_url=str(request.base_url).rstrip("/"),
    )


@router.get("/ui/{kind}s/{namespace}/{name}/blob/{revision}/{path:path}", response_class=HTMLResponse)
@policy(Rule.REPO_READ)
def file_page(
    request: Request, state: StateDep, caller: PageCallerDep, kind: str, namespace: str, name: str,
    revision: str, path: str,
) -> Response:
    repo_id = f"{namespace}/{name}"
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    if kind not in REPO_TYPES:
        return not_found(request, caller, "page")
    try:
        repo = state.policy.readable_repo(state.hub, repo_id, caller)
        head = state.hub.resolve(repo.repo_id, revision)
        entry, tensors = state.hub.browse.entry(repo.repo_id, head.oid, path)
    except NotFound:
        return not_found(request, caller, "file")
    names = _base_names(state, [entry], caller)
    how, detail = _storage_label(entry, names)
    base_link = None
    if entry.file.base_sha256:
        locs = visible_locations(state.hub.browse.locations([entry.file.base_sha256]).get(
            entry.file.base_sha256, []), caller, state.policy)
        if locs:
            base_link = (locs[0], file_url(locs[0].repo_id, "main", locs[0].path))
    stored_raw = sum(t.nbytes for t in tensors)
    return page(
        request, caller, "file.html", repo=repo, kind=kind, revision=revision, head=head, entry=entry,
        tensors=tensors, how=how, detail=detail, base_link=base_link, stored_raw=stored_raw,
        download=f"/{quote(repo.repo_id, safe='/')}/resolve/{quote(head.oid)}/{quote(path, safe='/')}",
        weights=[t for t in tensors if t.is_tensor] if entry.file.tensors else [],
    )


@router.get("/ui/families", response_class=HTMLResponse)
@policy(Rule.HUB_READ)
def families(request: Request, state: StateDep, caller: PageCallerDep) -> Response:
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    rows = state.hub.browse.families()
    return page(request, caller, "families.html", rows=rows)


def _member_label(member: FamilyMember, caller: TokenInfo | None, rules: Policy) -> tuple[str, str | None]:
    shown = visible_locations(member.locations, caller, rules)
    if not shown:
        return ("private file" if member.locations else "unreferenced file"), None
    first = shown[0]
    return f"{first.repo_id}", repo_url(first.repo_id)


def _stub(nodes: list[charts.Node], edges: list[charts.Edge], family_id: int, parent: str, count: int,
          offset: int, key: str = "more") -> None:
    """A "+N more" box under `parent`: its link re-centres the picture on the parent's next children."""
    stub = f"{key}-{parent}"
    nodes.append(charts.Node(stub, f"+{count} more", "click to show them",
                             f"/ui/families/{family_id}?focus={parent}&offset={offset}", more=True))
    edges.append(charts.Edge(stub, parent, ""))


@router.get("/ui/families/{family_id}", response_class=HTMLResponse)
@policy(Rule.HUB_READ)
def family(
    request: Request, state: StateDep, caller: PageCallerDep, family_id: int,
    focus: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    page_no: Annotated[int, Query(alias="page", ge=1)] = 1, offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    if (refused := closed(request, caller, state.policy)) is not None:
        return refused
    found = state.hub.browse.family(family_id)
    if found is None:
        return not_found(request, caller, "family")
    summary, members = found
    by_sha = {m.sha256: m for m in members}
    children: dict[str, list[str]] = defaultdict(list)
    for m in members:
        if m.base_sha256 in by_sha:
            children[m.base_sha256].append(m.sha256)
    for kids in children.values():
        kids.sort(key=lambda s: -by_sha[s].saved_vs_base)
    roots = [focus] if focus in by_sha else [m.sha256 for m in members if m.base_sha256 not in by_sha]
    nodes: list[charts.Node] = []
    edges: list[charts.Edge] = []
    drawn: set[str] = set()
    queue = list(roots)
    while queue and len(drawn) < LINEAGE_MAX_NODES:
        sha = queue.pop(0)
        if sha in drawn:
            continue
        drawn.add(sha)
        m = by_sha[sha]
        label, href = _member_label(m, caller, state.policy)
        shown = visible_locations(m.locations, caller, state.policy)
        sub = f"{shown[0].path} · {human_bytes(m.stored_bytes)} stored" if shown else human_bytes(m.size)
        nodes.append(charts.Node(sha, label, sub, href))
        kids = children.get(sha, [])
        start = offset if sha == focus else 0
        for kid in kids[start : start + LINEAGE_MAX_CHILDREN]:
            edges.append(charts.Edge(kid, sha, f"saves {human_bytes(by_sha[kid].saved_vs_base)}"))
            queue.append(kid)
        hidden = len(kids) - start - LINEAGE_MAX_CHILDREN
        if hidden > 0:
            _stub(nodes, edges, family_id, sha, hidden, start + LINEAGE_MAX_CHILDREN)
    # Children cut by the node limit: one stub per parent, so nothing disappears silently.
    for sha in list(drawn):
        start = offset if sha == focus else 0
        cut = [k for k in children.get(sha, [])[start : start + LINEAGE_MAX_CHILDREN] if k not in drawn]
        if cut:
            edges[:] = [e for e in edges if not (e.base == sha and e.child in cut)]
            _stub(nodes, edges, family_id, sha, len(cut), start + LINEAGE_MAX_CHILDREN - len(cut), key="cut")
    ordered = sorted(members, key=lambda m: (m.base_sha256 is not None, -m.saved_vs_base))
    pages = max((len(ordered) + MEMBERS_PAGE - 1) // MEMBERS_PAGE, 1)
    page_no = min(page_no, pages)
    table = []
    for m in ordered[(page_no - 1) * MEMBERS_PAGE : page_no * MEMBERS_PAGE]:
        label, href = _member_label(m, caller, state.policy)
        shown = visible_locations(m.locations, caller, state.policy)
        base = _member_label(by_sha[m.base_sha256], caller, state.policy)[0] if m.base_sha256 in by_sha else None
        table.append((m, label, href, shown[0].path if shown else "", base))
    return page(
        request, caller, "family.html", summary=summary, svg=charts.lineage_svg(nodes, edges, roots),
        table=table, page_no=page_no, pages=pages, focus=focus if focus in by_sha else None,
        saved=sum(m.saved_vs_base for m in members), members=len(members),
    )


@router.get("/ui/queue", response_class=HTMLResponse)
@policy(Rule.HUB_ADMIN)
def ingest_queue(request: Request, state: StateDep, caller: PageCallerDep) -> Response:
    if caller is None or not caller.hub_admin:
        return page(request, caller, "signin.html", status=403 if caller else 401,
                    message="The ingest queue is for hub administrators: sign in with an administrator's token.",
                    next="/ui/queue")
    jobs = state.hub.browse.jobs(JOB_STATES)
    counts = state.hub.browse.totals().jobs
    return page(request, caller, "queue.html", jobs=jobs, counts=counts, states=JOB_STATES)


@router.get("/ui/signin", response_class=HTMLResponse)
@policy(Rule.PUBLIC)
def signin_form(request: Request, caller: PageCallerDep, next: str = "/") -> Response:
    return page(request, caller, "signin.html", message=None, next=_local(next))


@router.post("/ui/signin", response_class=HTMLResponse)
@policy(Rule.PUBLIC)
async def signin(request: Request, state: StateDep) -> Response:
    fields = await checked_form(request)
    token = fields.get("token", "").strip()
    target = _local(fields.get("next", "/"))
    caller = state.tokens.verify(token) if token else None
    if caller is None:
        return page(request, None, "signin.html", status=401, message="That token is not valid.", next=target)
    response = RedirectResponse(target, status_code=303)
    sign_in(request, response, token)
    return response


@router.post("/ui/signout")
@policy(Rule.PUBLIC)
async def signout(request: Request) -> Response:
    await checked_form(request)
    response = RedirectResponse("/", status_code=303)
    sign_out(response)
    return response


def _local(target: str) -> str:
    """Only paths on this site: a sign-in link must not bounce people to someone else's."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
