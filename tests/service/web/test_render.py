"""Model cards, sizes and the SVG pictures, without a server: hostile input in, inert text out."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from service.web import charts
from service.web.render import front_matter, human_bytes, model_card_html
from service.web.routes import _local


@pytest.mark.parametrize("card", [
    "<script>alert(1)</script>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "![x](javascript:alert(1))",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)" onclick="alert(2)">x</a>',
    "<iframe src=https://evil.example></iframe>",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<svg onload="alert(1)"><circle/></svg>',
    "<style>body{display:none}</style>",
])
def test_model_cards_keep_no_active_content(card: str) -> None:
    """Parsed as a browser would: markup shown as text is fine, active tags or attributes are not."""
    tags = _tags(str(model_card_html(card)))
    assert not {t for t, _ in tags} & {"script", "iframe", "svg", "style", "object", "embed", "img", "a"}
    for _, attributes in tags:
        for name, value in attributes:
            assert not name.startswith("on"), (card, name)
            assert not (value or "").strip().lower().startswith(("javascript:", "data:")), (card, value)


def _tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_model_cards_keep_their_formatting_and_safe_links() -> None:
    html = str(model_card_html("---\nlicense: mit\n---\n# Title\n\n**bold** [docs](https://example.org)\n\n"
                               "| a |\n|---|\n| 1 |\n"))
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<table>" in html
    assert 'href="https://example.org"' in html and "noopener" in html
    assert "license" not in html  # the front matter is metadata, shown apart


def test_front_matter() -> None:
    assert front_matter("---\nlicense: mit\nbase_model: org/base\ntags:\n- a\n---\n# x") == {
        "license": "mit", "base_model": "org/base"}
    assert front_matter("# no metadata") == {}


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 2e12, -2048)] == [
        "0 B", "999 B", "1.0 KB", "1.5 MB", "2.0 TB", "-2.0 KB"]


def test_sign_in_only_redirects_to_this_site() -> None:
    assert _local("/ui/queue") == "/ui/queue"
    for target in ("//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)"):
        assert _local(target) == "/"


def test_the_savings_bar_has_a_slice_per_positive_source() -> None:
    slices = charts.savings_slices(100, {"file_dedup": 50, "tensor_dedup": 0, "delta_coding": 25,
                                         "plain_coding": -3, "overhead": -1})
    assert [s.key for s in slices] == ["stored", "file_dedup", "delta_coding"]
    svg = str(charts.savings_bar(slices))
    assert svg.count("<rect data-slice=") == 3


def test_lineage_escapes_labels_and_places_children_right_of_their_base() -> None:
    nodes = [charts.Node("a", "<b>base</b>", "x", "/ui/models/o/a"), charts.Node("b", "child", "y", None)]
    svg = str(charts.lineage_svg(nodes, [charts.Edge("b", "a", "saves 1 KB")], ["a"]))
    assert "<b>" not in svg and "&lt;b&gt;base&lt;/b&gt;" in svg
    assert 'data-base="a" data-child="b"' in svg
    x_of = {node: float(svg.split(f'data-node="{node}"')[1].split('x="')[1].split('"')[0]) for node in "ab"}
    assert x_of["a"] < x_of["b"]


def test_lineage_survives_a_cycle() -> None:
    nodes = [charts.Node("a", "a", "", None), charts.Node("b", "b", "", None)]
    svg = str(charts.lineage_svg(nodes, [charts.Edge("a", "b", ""), charts.Edge("b", "a", "")], []))
    assert svg.count("<rect") == 2
