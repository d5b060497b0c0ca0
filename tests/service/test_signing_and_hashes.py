from __future__ import annotations

import pytest
from huggingface_hub.utils import sha
from hypothesis import given
from hypothesis import strategies as st

from service.errors import Forbidden
from service.hf_json import git_blob_sha1
from service.signing import UploadSigner


def test_signatures_bind_object_size_and_time() -> None:
    signer = UploadSigner(b"k" * 32, ttl_seconds=60)
    expires, signature = signer.sign("ab" * 32, 10, now=1000.0)
    assert expires == 1060
    signer.check("ab" * 32, 10, expires, signature, now=1059.0)
    for oid, size, exp in (("cd" * 32, 10, expires), ("ab" * 32, 11, expires), ("ab" * 32, 10, expires + 1)):
        with pytest.raises(Forbidden, match="signature"):
            signer.check(oid, size, exp, signature, now=1000.0)
    with pytest.raises(Forbidden, match="expired"):
        signer.check("ab" * 32, 10, expires, signature, now=1061.0)
    with pytest.raises(Forbidden, match="signature"):
        UploadSigner(b"j" * 32, ttl_seconds=60).check("ab" * 32, 10, expires, signature, now=1000.0)


@given(st.binary(max_size=2000))
def test_git_blob_ids_match_the_client(content: bytes) -> None:
    assert git_blob_sha1(content) == sha.git_hash(content)
