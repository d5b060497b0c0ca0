"""Catalog queries for repositories, commits, branches and trees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from storage.catalog.models import (
    Commit,
    CommitAlias,
    FileObject,
    Ref,
    RefKind,
    RepoRedirect,
    Repository,
    RepoType,
    TreeEntry,
    utcnow,
)
from storage.core.errors import (
    Conflict,
    EntryNotFound,
    FileNotStored,
    InvalidInput,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
    StaleParent,
)
from storage.core.gitobjects import GitBlob, commit_id, identity, tree_objects
from storage.core.names import is_commit_oid, split_repo_id

DEFAULT_BRANCH = "main"


def create_repo(session: Session, repo_id: str, *, private: bool, repo_type: str = RepoType.MODEL) -> Repository:
    namespace, name = split_repo_id(repo_id)
    repo = Repository(repo_type=RepoType(repo_type), namespace=namespace, name=name, private=private)
    session.add(repo)
    try:
        session.flush()
    except SAIntegrityError as exc:
        raise RepoExists(repo_id=repo_id) from exc
    _drop_redirect(session, repo.repo_type, namespace, name)  # a new repository takes the name back
    return repo


def _drop_redirect(session: Session, repo_type: str, namespace: str, name: str) -> None:
    session.execute(
        delete(RepoRedirect).where(
            RepoRedirect.repo_type == repo_type, RepoRedirect.namespace == namespace, RepoRedirect.name == name
        )
    )


def moved_to(session: Session, repo_id: str, repo_type: str = RepoType.MODEL) -> Repository | None:
    """The repository that was moved away from `repo_id`, under its current name (None if none was)."""
    namespace, name = split_repo_id(repo_id)
    return session.scalar(
        select(Repository).join(RepoRedirect, RepoRedirect.repository_id == Repository.id).where(
            RepoRedirect.repo_type == repo_type, RepoRedirect.namespace == namespace, RepoRedirect.name == name
        )
    )


def find_repo(session: Session, repo_id: str, repo_type: str = RepoType.MODEL) -> Repository:
    namespace, name = split_repo_id(repo_id)
    repo = session.scalar(
        select(Repository).where(
            Repository.repo_type == repo_type, Repository.namespace == namespace, Repository.name == name
        )
    )
    if repo is None:
        raise RepoNotFound(repo_id=repo_id)
    return repo


def list_repos(session: Session) -> list[Repository]:
    return list(
        session.scalars(select(Repository).order_by(Repository.repo_type, Repository.namespace, Repository.name))
    )


# Sort keys of the Hub's listings that deltahub can answer; the rest (downloads, likes, trending) are
# zero for every repository here, so they order by name.
_SORTS = {"lastModified", "createdAt", "id"}


def search_repos(
    session: Session,
    repo_type: str,
    *,
    search: str | None,
    author: str | None,
    include_private: bool,
    sort: str | None,
    private_namespaces: frozenset[str] = frozenset(),
    private_repos: frozenset[str] = frozenset(),
    descending: bool,
    offset: int,
    limit: int,
) -> list[tuple[Repository, Commit | None]]:
    """One page of a listing with the head of each repository's main branch, in one query."""
    head = (
        select(Ref.repo_id, Ref.commit_oid)
        .where(Ref.name == DEFAULT_BRANCH, Ref.kind == RefKind.BRANCH)
        .subquery()
    )
    query = (
        select(Repository, Commit)
        .outerjoin(head, head.c.repo_id == Repository.id)
        .outerjoin(Commit, (Commit.repo_id == head.c.repo_id) & (Commit.oid == head.c.commit_oid))
        .where(Repository.repo_type == repo_type)
    )
    if not include_private:
        visible: list[Any] = [Repository.private.is_(False)]
        if private_namespaces:
            visible.append(Repository.namespace.in_(sorted(private_namespaces)))
        for repo_id in sorted(private_repos):
            namespace, name = split_repo_id(repo_id)
            visible.append((Repository.namespace == namespace) & (Repository.name == name))
        query = query.where(or_(*visible))
    if author:
        query = query.where(Repository.namespace == author)
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        full_id = func.lower(Repository.namespace + "/" + Repository.name)
        query = query.where(full_id.like(pattern, escape="\\"))
    by_name: list[Any] = [Repository.namespace, Repository.name]
    order: list[Any]
    if sort in _SORTS and sort != "id":
        modified = func.coalesce(Commit.created_at, Repository.created_at)
        column = Repository.created_at if sort == "createdAt" else modified
        order = [column.desc() if descending else column.asc(), *by_name]
    else:
        order = [c.desc() for c in by_name] if descending and sort == "id" else by_name
    rows = session.execute(query.order_by(*order, Repository.id).offset(offset).limit(limit))
    return [(repo, commit) for repo, commit in rows]


def head_sizes(session: Session, heads: Sequence[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Logical bytes of each (repository id, commit id)'s tree (what `hf repos ls` shows as storage)."""
    if not heads:
        return {}
    rows = session.execute(
        select(TreeEntry.repo_id, TreeEntry.commit_oid, func.sum(FileObject.size))
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(tuple_(TreeEntry.repo_id, TreeEntry.commit_oid).in_(list(heads)))
        .group_by(TreeEntry.repo_id, TreeEntry.commit_oid)
    )
    return {(repo_id, oid): int(total or 0) for repo_id, oid, total in rows}


def rename_repo(session: Session, repo: Repository, to_repo_id: str) -> Repository:
    """Move the repository to a new name; its old name redirects to it (as on the Hub) from now on."""
    namespace, name = split_repo_id(to_repo_id)
    old = (repo.namespace, repo.name)
    if old == (namespace, name):
        return repo
    repo.namespace, repo.name = namespace, name
    try:
        session.flush()
    except SAIntegrityError as exc:
        raise RepoExists(repo_id=to_repo_id) from exc
    _drop_redirect(session, repo.repo_type, namespace, name)
    _drop_redirect(session, repo.repo_type, *old)
    session.add(RepoRedirect(repo_type=repo.repo_type, namespace=old[0], name=old[1], repository_id=repo.id))
    session.flush()
    return repo


def delete_repo(session: Session, repo: Repository) -> None:
    """Remove a repository with its branches, commits and trees; its files are left to GC."""
    session.execute(delete(Ref).where(Ref.repo_id == repo.id))
    session.execute(delete(RepoRedirect).where(RepoRedirect.repository_id == repo.id))
    session.execute(delete(CommitAlias).where(CommitAlias.repo_id == repo.id))
    session.execute(delete(TreeEntry).where(TreeEntry.repo_id == repo.id))
    session.execute(update(Commit).where(Commit.repo_id == repo.id).values(parent_oid=None))
    session.execute(delete(Commit).where(Commit.repo_id == repo.id))
    session.delete(repo)
    session.flush()


def branches(session: Session, repo: Repository) -> dict[str, str]:
    rows = session.execute(
        select(Ref.name, Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.kind == RefKind.BRANCH).order_by(Ref.name)
    )
    return {name: oid for name, oid in rows}


def refs(session: Session, repo: Repository) -> list[Ref]:
    """Branches and tags, by kind then name."""
    return list(session.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.kind, Ref.name)))


def has_refs(session: Session, repo: Repository) -> bool:
    return session.scalar(select(Ref.name).where(Ref.repo_id == repo.id).limit(1)) is not None


def create_ref(
    session: Session, repo: Repository, name: str, kind: RefKind, commit: Commit, *, message: str | None = None
) -> Ref:
    """A new branch or tag at `commit`; Conflict when a branch or tag has that name already."""
    existing = session.get(Ref, (repo.id, name))
    if existing is not None:
        raise Conflict(detail=f"a {existing.kind} named {name!r} already exists")
    ref = Ref(repo_id=repo.id, name=name, commit_oid=commit.oid, kind=kind, message=message)
    session.add(ref)
    try:
        session.flush()
    except SAIntegrityError as exc:
        raise Conflict(detail=f"{name!r} was created concurrently") from exc
    return ref


def delete_ref(session: Session, repo: Repository, repo_id: str, name: str, kind: RefKind) -> None:
    ref = session.get(Ref, (repo.id, name))
    if ref is None or ref.kind != kind:
        raise RevisionNotFound(repo_id=repo_id, revision=name)
    session.delete(ref)
    session.flush()


def find_ref(session: Session, repo: Repository, name: str) -> Ref | None:
    return session.get(Ref, (repo.id, name))


def resolve(session: Session, repo: Repository, repo_id: str, revision: str) -> Commit:
    """A branch name, or a full commit id of this repository."""
    oid = session.scalar(select(Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.name == revision))
    if oid is None and is_commit_oid(revision):
        # A commit id from before 0008_git names its commit through the alias the migration kept.
        alias = select(CommitAlias.oid).where(CommitAlias.repo_id == repo.id, CommitAlias.old_oid == revision)
        oid = session.scalar(alias) or revision
    commit = session.get(Commit, (repo.id, oid)) if oid else None
    if commit is None:
        raise RevisionNotFound(repo_id=repo_id, revision=revision)
    return commit


def history(session: Session, commit: Commit, limit: int = 1000) -> list[Commit]:
    out = [commit]
    while out[-1].parent_oid and len(out) < limit:
        parent = session.get(Commit, (commit.repo_id, out[-1].parent_oid))
        if parent is None:
            break
        out.append(parent)
    return out


def tree(session: Session, repo: Repository, commit_oid: str) -> list[tuple[TreeEntry, FileObject]]:
    """Every file of a commit of `repo` (none for a commit of another repository), with its entry: how
    git holds it."""
    rows = session.execute(
        select(TreeEntry, FileObject)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == repo.id, TreeEntry.commit_oid == commit_oid)
        .order_by(TreeEntry.path)
    )
    return [(entry, file) for entry, file in rows]


def entry(session: Session, repo: Repository, repo_id: str, commit_oid: str, path: str) -> tuple[TreeEntry, FileObject]:
    found = session.execute(
        select(TreeEntry, FileObject)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == repo.id, TreeEntry.commit_oid == commit_oid, TreeEntry.path == path)
    ).first()
    if found is None:
        raise EntryNotFound(repo_id=repo_id, revision=commit_oid, path=path)
    entry_row, file = found
    return entry_row, file


def new_commit(
    session: Session,
    repo: Repository,
    branch: str,
    *,
    files: Mapping[str, str],
    message: str,
    author: str | None,
    parent: Commit | None,
    expected_parent: str | None,
    blobs: Mapping[str, GitBlob] | None = None,
    git_author: str | None = None,
    git_committer: str | None = None,
    expected_oid: str | None = None,
) -> Commit:
    """Write a commit with the full tree `files` (path → sha256) and move `branch` to it.

    Its id is the git id of the commit object built from the tree, the parent, the author and committer
    lines and the message (storage/core/gitobjects.py). `blobs` says how git holds each path; a path it
    does not name is an LFS pointer. Lines default to `author` now, committed by this repository (the
    committer names the repository so that two repositories never compute one id). A push passes the
    lines it received and `expected_oid`, the id git computed: a mismatch is refused, not stored.

    The branch moves by compare-and-swap on its old head, so two writers racing on one branch cannot
    lose a commit: the loser gets StaleParent and may retry on the new head.
    """
    head = parent.oid if parent else None
    if expected_parent is not None and expected_parent != head:
        raise StaleParent(branch=branch, expected=expected_parent, head=head)
    held = git_blobs(session, files, blobs or {})
    when = utcnow()  # git lines keep whole seconds; created_at keeps the order of same-second commits
    git_author = git_author or identity(author or "deltahub", when)
    git_committer = git_committer or identity("deltahub", when, f"repo-{repo.id}@commits.deltahub")
    tree_oid, _, _ = tree_objects({path: blob.oid for path, blob in held.items()})
    oid = commit_id(tree_oid, head, git_author, git_committer, message)
    if expected_oid is not None and expected_oid != oid:
        raise InvalidInput(detail=f"commit {expected_oid} does not rebuild from what it holds (got {oid})")
    if session.get(Commit, (repo.id, oid)) is not None:
        # Another repository may hold the same commit (a fork pushed with git); this one cannot twice.
        raise Conflict(detail=f"commit {oid} is already held by this repository")
    session.add(
        Commit(
            oid=oid, repo_id=repo.id, parent_oid=head, message=message, author=author, created_at=when,
            git_author=git_author, git_committer=git_committer,
        )
    )
    session.flush()
    session.add_all(
        TreeEntry(
            repo_id=repo.id, commit_oid=oid, path=path, file_sha256=files[path], lfs=blob.lfs, git_oid=blob.oid
        )
        for path, blob in sorted(held.items())
    )
    if head is None:
        session.add(Ref(repo_id=repo.id, name=branch, commit_oid=oid))
        try:
            session.flush()
        except SAIntegrityError as exc:
            raise StaleParent(branch=branch, expected=None, head="(created concurrently)") from exc
    else:
        moved = session.execute(
            update(Ref)
            .where(Ref.repo_id == repo.id, Ref.name == branch, Ref.kind == RefKind.BRANCH, Ref.commit_oid == head)
            .values(commit_oid=oid)
        )
        if cast("CursorResult[Any]", moved).rowcount != 1:
            raise StaleParent(branch=branch, expected=head, head="(moved concurrently)")
    session.flush()
    commit = session.get(Commit, (repo.id, oid))
    assert commit is not None
    return commit


def git_blobs(session: Session, files: Mapping[str, str], blobs: Mapping[str, GitBlob]) -> dict[str, GitBlob]:
    """How git holds each file: as `blobs` says, else as the LFS pointer of its sha256 and size."""
    out = {path: blobs[path] for path in files if path in blobs}
    rest = sorted({sha for path, sha in files.items() if path not in blobs})
    sizes: dict[str, int] = {}
    for start in range(0, len(rest), 500):
        rows = session.execute(
            select(FileObject.sha256, FileObject.size).where(FileObject.sha256.in_(rest[start : start + 500]))
        )
        sizes.update({sha: size for sha, size in rows})
    for path, sha in files.items():
        if path not in out:
            if sha not in sizes:
                raise FileNotStored(sha256=sha)
            out[path] = GitBlob.pointer(sha, sizes[sha])
    return out


def tree_blobs(session: Session, commit: Commit) -> dict[str, GitBlob]:
    rows = session.execute(
        select(TreeEntry.path, TreeEntry.lfs, TreeEntry.git_oid)
        .where(TreeEntry.repo_id == commit.repo_id, TreeEntry.commit_oid == commit.oid)
    )
    return {path: GitBlob(lfs, oid) for path, lfs, oid in rows}


def branch_head(session: Session, repo: Repository, branch: str) -> Commit | None:
    oid = session.scalar(
        select(Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.name == branch, Ref.kind == RefKind.BRANCH)
    )
    return session.get(Commit, (repo.id, oid)) if oid else None


def tree_files(session: Session, commit: Commit) -> dict[str, str]:
    rows = session.execute(
        select(TreeEntry.path, TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == commit.repo_id, TreeEntry.commit_oid == commit.oid)
    )
    return {path: sha for path, sha in rows}


def apply_changes(
    files: dict[str, str], additions: Sequence[tuple[str, str]], deletions: Sequence[str]
) -> list[str]:
    """Apply the changes; the deletions that matched nothing are returned (the Hub refuses them).

    Deleting "dir/" or a folder name removes everything under it, as the hub's deletedFolder does.
    """
    missing = []
    for path in deletions:
        folder = path.rstrip("/") + "/"
        matched = [p for p in files if p == path or p.startswith(folder)]
        if not matched:
            missing.append(path)
        for existing in matched:
            del files[existing]
    for path, sha in additions:
        files[path] = sha
    return missing


def last_changes(session: Session, head: Commit, paths: Sequence[str], limit: int = 1000) -> dict[str, Commit]:
    """The newest commit that changed each path, for paths of `head`'s tree.

    Trees are stored whole, so a path last changed in commit C is held with the same content by every
    commit from `head` down to C and not by C's parent. One query finds, over the first `limit` commits
    of the history, the commits holding each path with its head content; the run unbroken from `head`
    ends at the answer. No file's history is walked on its own.
    """
    history_commits = history(session, head, limit)
    order = {c.oid: i for i, c in enumerate(history_commits)}
    held: dict[str, set[int]] = {p: set() for p in paths}
    now = (
        select(TreeEntry.path, TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == head.repo_id, TreeEntry.commit_oid == head.oid)
        .subquery()
    )
    wanted = list(paths)
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(TreeEntry.commit_oid, TreeEntry.path)
            .join(now, (now.c.path == TreeEntry.path) & (now.c.file_sha256 == TreeEntry.file_sha256))
            .where(TreeEntry.repo_id == head.repo_id, TreeEntry.commit_oid.in_(list(order)),
                   TreeEntry.path.in_(wanted[start : start + 500]))
        )
        for oid, path in rows:
            held[path].add(order[oid])
    out: dict[str, Commit] = {}
    for path, indices in held.items():
        if 0 not in indices:
            continue
        depth = 0
        while depth + 1 in indices:
            depth += 1
        out[path] = history_commits[depth]
    return out


def all_file_shas(session: Session) -> list[str]:
    return list(session.scalars(select(FileObject.sha256).order_by(FileObject.sha256)))


def locations(session: Session, sha256: str) -> list[tuple[str, str]]:
    """Every (repository, path) that names the file in some commit."""
    rows = session.execute(
        select(Repository.namespace, Repository.name, TreeEntry.path)
        .join(Repository, Repository.id == TreeEntry.repo_id)
        .where(TreeEntry.file_sha256 == sha256)
        .distinct()
    )
    return sorted((f"{ns}/{name}" if ns else name, path) for ns, name, path in rows)
