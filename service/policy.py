"""Who may do what to which repository: the one access policy of the API and the web pages.

A caller is anonymous (None) or a user acting through one token (service.auth.TokenInfo). What the
user may do to a namespace comes from who they are: their own namespace and, as a hub administrator,
every namespace, they may write; in an organization their role decides (read; write and admin write).
The token then caps it: a read token reads at most, a write token passes the user's rights on, and a
fine-grained token reaches only the namespaces and repositories its scopes name, with the right each
grants, and never more than the user has.

Public repositories are read by anyone the hub lets in: any valid token, and anonymous callers unless
the hub forbids anonymous reading (DELTAHUB_ANONYMOUS_READ=false). A private repository is read only by
those with at least read access to it; to everyone else it is missing: the same RepoNotFound as a
repository that does not exist, on every route, before the route reads anything else.

Every route declares which rule guards it with ``@policy(...)`` (the authorization matrix test,
tests/service/test_authorization_matrix.py, fails on a route without one and checks each rule against
every kind of caller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TypeVar

from service.auth import TokenInfo
from service.errors import Forbidden, Unauthorized
from storage.app.hub import HubApi
from storage.app.views import LocatedFile, ReadSource, RepoInfo
from storage.core.errors import RepoNotFound
from storage.core.names import split_repo_id


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


class Rule(StrEnum):
    """The policy a route declares."""

    PUBLIC = "public"  # anyone; the route reveals nothing about repositories or content
    AUTHENTICATED = "authenticated"  # any valid token
    WRITE_TOKEN = "write-token"  # a token that may write somewhere (LFS verify: content addressed)
    HUB_READ = "hub-read"  # what the hub lets in (anonymous per the switch); answers filtered per caller
    REPO_READ = "repo-read"  # the repository of the path, readable by the caller
    REPO_WRITE = "repo-write"  # the repository of the path, writable by the caller
    NAMESPACE_WRITE = "namespace-write"  # a namespace (and repository) named in the body, writable
    HUB_ADMIN = "hub-admin"  # hub administrators only
    SIGNED_URL = "signed-url"  # an HMAC-signed upload URL handed out by a REPO_WRITE route
    CAS_TOKEN = "cas-token"  # a Xet CAS token handed out by a REPO_READ / REPO_WRITE route
    # git's smart HTTP (service/routes/git.py): REPO_READ, except that an anonymous caller who may not read
    # is challenged (401, WWW-Authenticate: Basic) whether the repository is private or missing, since git
    # sends credentials only after a challenge; info/refs for git-receive-pack is REPO_WRITE.
    GIT_READ = "git-read"
    # The LFS batch API: REPO_WRITE for an upload; for a download REPO_READ, an anonymous caller who may
    # not read being challenged as GIT_READ does.
    LFS_BATCH = "lfs-batch"


_MARK = "__deltahub_policy__"
F = TypeVar("F", bound=Callable[..., object])


def policy(rule: Rule) -> Callable[[F], F]:
    """Declare the rule that guards a route (enforced by its dependencies, checked by the matrix test)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _MARK, rule)
        return endpoint

    return mark


def declared_rule(endpoint: object) -> Rule | None:
    found = getattr(endpoint, _MARK, None)
    return found if isinstance(found, Rule) else None


ANONYMOUS_READ_REFUSED = "this hub does not allow anonymous reading: pass a token (HF_TOKEN)"


@dataclass(frozen=True, slots=True)
class PrivateVisibility:
    """Which private repositories a caller may list: all of them, or those of some namespaces and some
    repositories (repo ids)."""

    everything: bool = False
    namespaces: frozenset[str] = frozenset()
    repos: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Policy:
    anonymous_read: bool = True

    # What a caller may do ------------------------------------------------------------------------
    def access(self, caller: TokenInfo | None, namespace: str, name: str | None = None) -> Access:
        """The caller's right over repository `namespace/name` (or the namespace itself, name None)."""
        if caller is None:
            return Access.NONE
        return min(_user_access(caller, namespace), _token_cap(caller, namespace, name))

    def may_read(self, caller: TokenInfo | None, repo_id: str, *, private: bool) -> bool:
        if not private:
            return caller is not None or self.anonymous_read
        namespace, name = split_repo_id(repo_id)
        return self.access(caller, namespace, name) >= Access.READ

    def may_write(self, caller: TokenInfo | None, repo_id: str) -> bool:
        namespace, name = split_repo_id(repo_id)
        return self.access(caller, namespace, name) >= Access.WRITE

    def let_in(self, caller: TokenInfo | None) -> None:
        """Unauthorized for an anonymous caller of a hub closed to anonymous reading."""
        if caller is None and not self.anonymous_read:
            raise Unauthorized(detail=ANONYMOUS_READ_REFUSED)

    def private_visibility(self, caller: TokenInfo | None) -> PrivateVisibility:
        if caller is None:
            return PrivateVisibility()
        if caller.hub_admin and caller.scopes is None:
            return PrivateVisibility(everything=True)
        mine = {caller.name} | {org for org, _ in caller.orgs}
        if caller.hub_admin:
            mine |= {s.namespace for s in caller.scopes or ()}
        if caller.scopes is None:
            return PrivateVisibility(namespaces=frozenset(mine))
        return PrivateVisibility(
            namespaces=frozenset(s.namespace for s in caller.scopes if s.name is None and s.namespace in mine),
            repos=frozenset(f"{s.namespace}/{s.name}" for s in caller.scopes if s.name and s.namespace in mine),
        )

    # Route guards --------------------------------------------------------------------------------
    def readable_repo(
        self, hub: HubApi, repo_id: str, caller: TokenInfo | None, *, repo_type: str = "model"
    ) -> RepoInfo:
        """The repository if the caller may read it; RepoNotFound otherwise, exactly as if it did not exist."""
        self.let_in(caller)
        repo = hub.get_repo(repo_id, repo_type=repo_type)
        if not self.may_read(caller, repo.repo_id, private=repo.private):
            raise RepoNotFound(repo_id=repo_id)
        return repo

    def readable_file(
        self, hub: HubApi, repo_id: str, revision: str, path: str, caller: TokenInfo | None, *,
        repo_type: str = "model",
    ) -> LocatedFile:
        """A download's repository, commit and file, found in one catalog session, under the same
        decision as `readable_repo` (taken on the repository as found, before its revision is looked at)."""
        self.let_in(caller)
        return hub.locate(
            repo_id, revision, path, repo_type=repo_type,
            may_read=lambda repo: self.may_read(caller, repo.repo_id, private=repo.private),
        )

    def readable_object(
        self, hub: HubApi, repo_id: str, sha256: str, caller: TokenInfo | None, *, repo_type: str = "model"
    ) -> ReadSource | None:
        """A git-lfs download's file (None when no commit names it), found with its repository in one
        catalog session, under the same decision as `readable_repo`."""
        self.let_in(caller)
        return hub.locate_object(
            repo_id, sha256, repo_type=repo_type,
            may_read=lambda repo: self.may_read(caller, repo.repo_id, private=repo.private),
        )

    def readable_objects(
        self, hub: HubApi, repo_id: str, sha256s: Sequence[str], caller: TokenInfo | None, *,
        repo_type: str = "model",
    ) -> tuple[RepoInfo, dict[str, int]]:
        """A git-lfs download batch's repository and the sizes of the offered contents its commits name,
        found in one catalog session, under the same decision as `readable_repo`."""
        self.let_in(caller)
        return hub.object_sizes(
            repo_id, sha256s, repo_type=repo_type,
            may_read=lambda repo: self.may_read(caller, repo.repo_id, private=repo.private),
        )

    def writable_repo(
        self, hub: HubApi, repo_id: str, caller: TokenInfo | None, *, repo_type: str = "model",
        deleting: bool = False,
    ) -> RepoInfo:
        """The repository if the caller may write it; Forbidden when they may only read it, RepoNotFound
        when they may not even see it. A mirrored repository is read-only (storage/app/mirror.py) but for
        `deleting` it."""
        writer = require_writer(caller)
        repo = self.readable_repo(hub, repo_id, writer, repo_type=repo_type)
        if not self.may_write(writer, repo.repo_id):
            raise Forbidden(detail=f"{writer.name!r} may not write to {repo.repo_id!r}{_token_note(writer)}")
        upstream = None if deleting else hub.mirrored_from(repo.repo_id, repo_type=repo_type)
        if upstream is not None:
            raise Forbidden(detail=f"{repo.repo_id!r} is a mirror of {upstream}: it is read-only here; "
                                   "write to the upstream, or delete the mirrored copy")
        return repo

    def require_namespace_writer(self, caller: TokenInfo | None, repo_id: str) -> TokenInfo:
        """For a repository that does not exist yet: the caller may create repositories in its namespace.
        Nobody takes a name in a namespace they do not own."""
        writer = require_writer(caller)
        namespace, name = split_repo_id(repo_id)
        if self.access(writer, namespace, name) < Access.WRITE:
            raise Forbidden(detail=f"{writer.name!r} may not create repositories in namespace {namespace!r}"
                            f"{_token_note(writer)}")
        return writer

    def may_name_file(self, hub: HubApi, caller: TokenInfo | None, sha256: str) -> bool:
        """Whether the caller may use a held file by its hash alone (`nameable_files`)."""
        return sha256 in self.nameable_files(hub, caller, [sha256])

    def nameable_files(self, hub: HubApi, caller: TokenInfo | None, sha256s: Sequence[str]) -> set[str]:
        """The files among `sha256s` the caller may use by hash alone (commit them, be told "held" for
        them, learn their state), decided in one catalog session: they may read a repository that names
        the file (public ones included), or its bytes were uploaded for a repository they may write (the
        one committed to among them), or they are a hub administrator (a fine-grained token of one: what
        its scopes let it read or write). Knowing a SHA-256 is not possession: everyone else is answered
        as for a file never uploaded."""
        if caller is None:
            return set()
        if caller.hub_admin and caller.scopes is None:
            return set(sha256s)
        return {
            sha256 for sha256, holders in hub.file_holders(sha256s).items()
            if any(self.may_read(caller, r.repo_id, private=r.private) for r in holders.naming)
            or any(self.may_write(caller, r.repo_id) for r in holders.granted)
        }

    def require_hub_admin(self, caller: TokenInfo | None) -> TokenInfo:
        if caller is None:
            raise Unauthorized(detail="this needs a hub administrator's token")
        if not caller.hub_admin:
            raise Forbidden(detail="only hub administrators may do this")
        return caller


def require_writer(caller: TokenInfo | None) -> TokenInfo:
    """A caller whose token may write somewhere: refused before any repository is looked up or any body
    read, whatever the repository (so the answer says nothing about it)."""
    if caller is None:
        raise Unauthorized(detail="this operation needs a write token (Authorization: Bearer <token>)")
    if not caller.may_write_somewhere:
        raise Forbidden(detail=f"token {caller.token_name or caller.name!r} is read-only")
    return caller


def _user_access(caller: TokenInfo, namespace: str) -> Access:
    if caller.hub_admin or namespace == caller.name:
        return Access.WRITE
    role = dict(caller.orgs).get(namespace)
    if role is None:
        return Access.NONE
    return Access.READ if role == "read" else Access.WRITE


def _token_cap(caller: TokenInfo, namespace: str, name: str | None) -> Access:
    if caller.scopes is None:
        return Access.WRITE if caller.can_write else Access.READ
    best = Access.NONE
    for scope in caller.scopes:
        if scope.namespace == namespace and (scope.name is None or scope.name == name):
            best = max(best, Access.WRITE if scope.can_write else Access.READ)
    return best


def _token_note(caller: TokenInfo) -> str:
    if caller.scopes is not None:
        return " (this fine-grained token's scopes do not grant it)"
    return "" if caller.can_write else " (read-only token)"
