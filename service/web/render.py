"""Turning records into page text: sizes, times, Markdown model cards (sanitised), the Jinja environment.

A model card is written by whoever pushed the repository: hostile input. It is rendered with raw HTML
disabled (markdown-it escapes it) and the result is cleaned again by nh3 (ammonia) against an allow-list
of tags, attributes and URL schemes, so no script, event handler or ``javascript:`` link survives even if
the Markdown renderer had a bug.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import nh3
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")
_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}
# The YAML block the Hub puts at the top of a model card (license, base_model, tags).
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.S)


def model_card_html(text: str) -> Markup:
    body = _FRONT_MATTER.sub("", text, count=1)
    html = _markdown.render(body)
    clean = nh3.clean(
        html, tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # cleaned by nh3 just above


def front_matter(text: str) -> dict[str, str]:
    """The card's simple `key: value` metadata lines (base_model, license), for the page's side panel."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}
    out = {}
    for line in match.group(0).splitlines()[1:-1]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip() and not line.startswith((" ", "-")):
            out[key.strip()] = value.strip().strip("'\"")
    return out


def human_bytes(n: int | float) -> str:
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def percent(part: int | float, whole: int | float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def ago(when: datetime) -> str:
    seconds = (datetime.now(UTC) - when).total_seconds()
    for limit, unit in ((60, "second"), (3600, "minute"), (86400, "hour"), (86400 * 30, "day")):
        if seconds < limit:
            size = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]
            n = max(int(seconds // size), 0)
            return "just now" if unit == "second" and n < 10 else f"{n} {unit}{'s' if n != 1 else ''} ago"
    return when.strftime("%Y-%m-%d")


def shape(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]), trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=human_bytes, ago=ago, shape=shape)
    env.globals.update(percent=percent)
    return env
