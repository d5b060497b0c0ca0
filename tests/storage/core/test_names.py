"""Names from the network: repository ids, branches, paths, hashes."""

from __future__ import annotations

import pytest

from storage.core.errors import InvalidInput, InvalidPath, InvalidRepoName
from storage.core.names import check_branch, check_path, check_sha256, check_tree, is_commit_oid, split_repo_id


@pytest.mark.parametrize(
    ("repo_id", "expected"),
    [("org/model", ("org", "model")), ("gpt2", ("", "gpt2")), ("a.b/c_d-1", ("a.b", "c_d-1"))],
)
def test_valid_repo_ids(repo_id: str, expected: tuple[str, str]) -> None:
    assert split_repo_id(repo_id) == expected


@pytest.mark.parametrize(
    ("repo_id", "reason"),
    [
        ("a/b/c", "at most one '/'"),
        ("", "each part is 1-96"),
        ("-a/b", "each part is 1-96"),
        ("a/b.", "each part is 1-96"),
        ("a--b/c", "'--' and '..' are not allowed"),
        ("a/b..c", "'--' and '..' are not allowed"),
        ("a/" + "x" * 97, "each part is 1-96"),
        ("a b/c", "each part is 1-96"),
    ],
)
def test_invalid_repo_ids(repo_id: str, reason: str) -> None:
    with pytest.raises(InvalidRepoName) as err:
        split_repo_id(repo_id)
    assert err.value.message.startswith(f"invalid repository name {repo_id!r}: {reason}")
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("../etc/passwd", "empty, '.' and '..' path parts are not allowed"),
        ("a/../../b", "empty, '.' and '..' path parts are not allowed"),
        ("a//b", "empty, '.' and '..' path parts are not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("C:/x", "absolute paths are not allowed"),
        ("a\\b", "backslashes are not allowed"),
        ("a\x00b", "contains a NUL byte"),
        ("a\nb", "control, invisible and line-breaking characters are not allowed"),
        ("a\x7fb", "control, invisible and line-breaking characters are not allowed"),
        ("evil\u202etxt.exe", "control, invisible and line-breaking characters are not allowed"),
        ("line\u2028break", "control, invisible and line-breaking characters are not allowed"),
        ("zero\u200bwidth", "control, invisible and line-breaking characters are not allowed"),
        ("lone\udc80surrogate", "not valid UTF-8 (it holds a lone surrogate)"),
        (".git/config", "'.git' and '.cache/huggingface' are reserved"),
        ("sub/.git/hooks/post-checkout", "'.git' and '.cache/huggingface' are reserved"),
        (".cache/huggingface/download/x.lock", "'.git' and '.cache/huggingface' are reserved"),
        ("x" * 1025, "longer than 1024 bytes"),
    ],
)
def test_invalid_paths(path: str, reason: str) -> None:
    with pytest.raises(InvalidPath) as err:
        check_path(path)
    assert err.value.message == f"invalid file path {path!r}: {reason}"


def test_a_tree_cannot_hold_a_file_where_a_folder_is_needed() -> None:
    check_tree(["d-x", "d/f", "d/g/h", "e"])
    with pytest.raises(InvalidPath) as err:
        check_tree(["d", "d-x", "d/f"])
    assert err.value.message == "invalid file path 'd': it is a file, and 'd/f' needs it to be a folder"
    with pytest.raises(InvalidPath):
        check_tree(["a/b/c", "a/b"])


def test_valid_paths_and_names() -> None:
    assert check_path("model-00001-of-00002.safetensors") == "model-00001-of-00002.safetensors"
    assert check_path(".gitattributes") == ".gitattributes" and check_path("a/.github/x") == "a/.github/x"
    assert check_path("日本語/модель.bin") == "日本語/модель.bin"
    assert check_path("sub dir/ünïcode.json") == "sub dir/ünïcode.json"
    assert check_branch("feature/x-1") == "feature/x-1"
    assert is_commit_oid("a" * 40) and not is_commit_oid("main")
    assert check_sha256("0" * 64) == "0" * 64
    for bad in ("A" * 64, "0" * 63, "g" * 64):
        with pytest.raises(InvalidInput):
            check_sha256(bad)
    for bad in ("../x", "a..b", "/x", "x/", "", "a b"):
        with pytest.raises(InvalidInput):
            check_branch(bad)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (split_repo_id, "bob/evil\n"),
        (split_repo_id, "alice\n/model"),
        (check_branch, "main\n"),
        (check_sha256, "a" * 64 + "\n"),
    ],
)
def test_a_trailing_newline_is_refused(check: object, value: str) -> None:
    # `$` matches before a final newline: every pattern must be applied as a full match.
    with pytest.raises(InvalidInput):
        check(value)  # type: ignore[operator]


def test_a_commit_id_with_a_trailing_newline_is_not_one() -> None:
    assert is_commit_oid("a" * 40) and not is_commit_oid("a" * 40 + "\n")
