from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from service.paths import param, routing_path


def test_encoded_slashes_stay_in_their_segment() -> None:
    raw = b"/api/models/ns/m/tree/refs%2Fpr%2F1/a%2fb%20c"
    assert routing_path(raw) == "/api/models/ns/m/tree/refs%2Fpr%2F1/a%2Fb c"
    segments = routing_path(raw).split("/")
    assert [param(s) for s in segments[-2:]] == ["refs/pr/1", "a/b c"]


@given(st.text(min_size=1))
def test_a_segment_quoted_by_the_client_comes_back_exactly(name: str) -> None:
    raw = ("/ns/m/resolve/" + quote(name, safe="") + "/f").encode()
    segment = routing_path(raw).split("/")[4]
    assert param(segment) == name
