"""git's smart HTTP protocol (stateless RPC), spoken by dulwich's handlers over the catalog's objects.

`advertise` answers ``GET …/info/refs?service=…``; `upload_pack` answers the POST of a clone or fetch
(the pack is built by dulwich from the repository's objects, storage/app/git_objects.py);
`receive_pack` takes a push: dulwich unpacks the pack (hostile input: its size is bounded before it is
read, by the route) into memory, then each ref update is applied to the catalog by GitPush, which
answers git's report-status line for it. A pack that does not unpack is refused whole (GitPackInvalid)
before any ref moves, so nothing of it is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from typing import cast

from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import ObjectID
from dulwich.protocol import CAPABILITY_ATOMIC, Protocol, ReceivableProtocol, pkt_line
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo
from dulwich.server import BackendRepo, DictBackend, Handler, ReceivePackHandler, UploadPackHandler

from storage.app.git_objects import GitObjects
from storage.app.git_push import GitPush, PushTarget
from storage.core.errors import GitPackInvalid, InvalidInput
from storage.core.gitpack import unpacked_bytes

UPLOAD_PACK, RECEIVE_PACK = "git-upload-pack", "git-receive-pack"
SERVICES = (UPLOAD_PACK, RECEIVE_PACK)


class _ReceiveRefs(ReceivePackHandler):
    """dulwich's receive-pack without atomic pushes (every ref is its own catalog transaction): what
    info/refs advertises for a push."""

    def capabilities(self) -> Iterator[bytes]:
        return (c for c in super().capabilities() if c != CAPABILITY_ATOMIC)


class _Receive(_ReceiveRefs):
    """The push itself: each ref update applied to the catalog, branches before tags, so a tag may name
    a commit pushed with it."""

    def __init__(self, repo: MemoryRepo, proto: ReceivableProtocol, push: GitPush, target: PushTarget) -> None:
        super().__init__(_backend(repo), ["/"], proto, stateless_rpc=True)
        self._push, self._target = push, target

    def _apply_pack(self, refs: list[tuple[ObjectID, ObjectID, Ref]]) -> Iterator[tuple[bytes, bytes]]:
        ordered = sorted(refs, key=lambda r: r[2].startswith(b"refs/tags/"))
        for name, status in super()._apply_pack(ordered):
            if name == b"unpack" and status != b"ok":
                raise GitPackInvalid(detail=status.decode(errors="replace"))
            yield name, status

    def _on_update(self, ref_name: Ref, old_sha: ObjectID, new_sha: ObjectID) -> bytes | None:
        problem = self._push.update_ref(
            self._target, ref_name.decode(errors="replace"), old_sha.decode(), new_sha.decode(),
            self.repo.object_store,
        )
        return problem.encode() if problem is not None else None


class GitHttp:
    def __init__(self, objects: GitObjects, push: GitPush) -> None:
        self._objects = objects
        self._push = push

    def advertise(self, repo_id: str, repo_type: str, service: str) -> bytes:
        """The body of ``info/refs?service=…``: the service line, then the refs and capabilities."""
        repo = self._objects.repository(repo_id, repo_type)
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO().read, out.write)
        handler: Handler
        if service == UPLOAD_PACK:
            handler = UploadPackHandler(_backend(repo), ["/"], proto, stateless_rpc=True,
                                        advertise_refs=True)
        else:
            handler = _ReceiveRefs(_backend(repo), ["/"], proto, stateless_rpc=True, advertise_refs=True)
        _run(handler)
        return pkt_line(f"# service={service}\n".encode()) + pkt_line(None) + out.getvalue()

    def upload_pack(self, repo_id: str, repo_type: str, body: bytes) -> bytes:
        repo = self._objects.repository(repo_id, repo_type)
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO(body).read, out.write)
        _run(UploadPackHandler(_backend(repo), ["/"], proto, stateless_rpc=True))
        return out.getvalue()

    def receive_pack(self, target: PushTarget, body: bytes, *, max_unpacked: int) -> bytes:
        """A push: the ref updates, then the pack (bounded to `max_unpacked` unpacked bytes before dulwich
        unpacks it); git's report-status."""
        _check_unpacked(body, max_unpacked)
        repo = self._objects.repository(target.repo_id, target.repo_type)
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO(body).read, out.write)
        _run(_Receive(repo, proto, self._push, target))
        return out.getvalue()


def _check_unpacked(body: bytes, limit: int) -> None:
    """Refuse a push whose pack unpacks into more than `limit` bytes. The pack follows the command list
    (pkt-lines up to a flush); a push that only deletes refs sends none."""
    commands = BytesIO(body)
    try:
        for _ in Protocol(commands.read, BytesIO().write).read_pkt_seq():
            pass
    except (GitProtocolError, HangupException) as err:
        raise InvalidInput(detail=f"git protocol: {err}") from err
    pack = memoryview(body)[commands.tell() :]
    if len(pack):
        unpacked_bytes(pack, limit)


def _backend(repo: MemoryRepo) -> DictBackend:
    return DictBackend({"/": cast(BackendRepo, repo)})


def _run(handler: Handler) -> None:
    """The handler's exchange; a request that breaks the protocol is the client's error (400)."""
    try:
        handler.handle()
    except (GitProtocolError, HangupException) as err:
        raise InvalidInput(detail=f"git protocol: {err}") from err
