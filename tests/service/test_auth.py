"""Credentials in the Authorization header (service/auth.py): Bearer as the Hugging Face client sends
them, Basic as git and git-lfs do (the password is the token)."""

from __future__ import annotations

import base64

import pytest

from service.auth import StaticTokenStore, TokenInfo, bearer_token, identify
from service.errors import INVALID_CREDENTIALS, Unauthorized

ALICE = TokenInfo("alice", True)
STORE = StaticTokenStore({"dh-token": ALICE})


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize("header", ["Bearer dh-token", "bearer  dh-token ", _basic(b"anyone:dh-token"),
                                    _basic(b":dh-token"), _basic("ünïcode:dh-token".encode())])
def test_the_token_is_found_in_bearer_and_basic_credentials(header: str) -> None:
    assert bearer_token(header) == "dh-token"
    assert identify(STORE, header) == ALICE


@pytest.mark.parametrize("header", ["Bearer", "Token dh-token", "Basic", "Basic !!!not-base64!!!",
                                    _basic(b"no-colon"), _basic(b"user:"), _basic(b"\xff\xfe:dh-token"),
                                    _basic(b"user:wrong"), "Bearer wrong"])
def test_malformed_or_unknown_credentials_are_refused(header: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        identify(STORE, header)
    assert refused.value.message == INVALID_CREDENTIALS


def test_no_header_is_anonymous() -> None:
    assert identify(STORE, None) is None
