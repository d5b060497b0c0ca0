"""The mirror's pure rules: which repositories are mirrored, and the check of an upstream's bytes."""

from __future__ import annotations

import hashlib

from storage.core.upstream import ContentCheck, UpstreamFile, is_mirrored


def test_deny_wins_over_allow_and_globs_match_the_whole_id() -> None:
    allow, deny = ("org/*", "other/one"), ("org/secret-*",)
    assert is_mirrored("org/bert", allow, deny)
    assert is_mirrored("other/one", allow, deny)
    assert not is_mirrored("org/secret-plans", allow, deny)
    assert not is_mirrored("other/two", allow, deny)
    assert not is_mirrored("org/bert", (), ())


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def test_a_git_file_is_checked_against_its_blob_id_and_an_lfs_file_against_its_oid() -> None:
    data = b"hello\n"
    for file in (UpstreamFile("a", len(data), None, _git_oid(data)),
                 UpstreamFile("a", len(data), hashlib.sha256(data).hexdigest(), "x")):
        check = ContentCheck(file)
        check.update(data)
        assert check.problem() is None
        wrong = ContentCheck(file)
        wrong.update(b"hellO\n")
        assert "hash to" in (wrong.problem() or "")
    short = ContentCheck(UpstreamFile("a", 10, None, _git_oid(data)))
    short.update(data)
    assert short.problem() == "a: received 6 bytes, the upstream lists 10"
