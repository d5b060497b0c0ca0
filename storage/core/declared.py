"""What an upload claims as its base model: a hint for choosing a base, measured before it is used."""

from __future__ import annotations

import json
import re

_FRONT_MATTER = re.compile(rb"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)
_BASE_LINE = re.compile(r"^base_model:\s*(.*)$", re.M)
_LIST_ITEM = re.compile(r"^\s*-\s*(\S+)\s*$", re.M)


def base_from_model_card(card: bytes) -> str | None:
    """`base_model` from a model card's YAML front matter (a string, or the first item of a list)."""
    match = _FRONT_MATTER.match(card)
    if not match:
        return None
    yaml = match.group(1).decode("utf-8", "replace")
    line = _BASE_LINE.search(yaml)
    if not line:
        return None
    value = line.group(1).strip().strip("'\"")
    if value.startswith("["):
        value = value.strip("[]").split(",")[0].strip().strip("'\"")
    if not value:
        item = _LIST_ITEM.search(yaml[line.end() :])
        value = item.group(1).strip("'\"") if item else ""
    return value or None


def base_from_config(config: bytes) -> str | None:
    """`_name_or_path` from a transformers config.json, when it names a hub repository."""
    try:
        document = json.loads(config)
    except (ValueError, UnicodeDecodeError):
        return None
    value = document.get("_name_or_path") if isinstance(document, dict) else None
    if isinstance(value, str) and value.count("/") == 1 and not value.startswith((".", "/")):
        return value
    return None
