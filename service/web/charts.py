"""SVG pictures drawn by the server: where the saving came from, and a family's lineage.

Pure functions from numbers to SVG text; every label goes through `escape`, since repository names and
paths are chosen by whoever pushed them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from service.web.render import human_bytes

# Colours shared with static/style.css (the legend chips there use the same names).
PALETTE = {
    "stored": "#334155",
    "file_dedup": "#6366f1",
    "tensor_dedup": "#0ea5e9",
    "chunk_dedup": "#a855f7",
    "delta_coding": "#10b981",
    "plain_coding": "#f59e0b",
}
LABELS = {
    "stored": "Stored",
    "file_dedup": "File dedup",
    "tensor_dedup": "Tensor dedup",
    "chunk_dedup": "Chunk dedup",
    "delta_coding": "Delta coding",
    "plain_coding": "Plain coding",
}


@dataclass(frozen=True, slots=True)
class Slice:
    key: str
    label: str
    value: int
    colour: str


def savings_slices(physical: int, savings: dict[str, int]) -> list[Slice]:
    """The logical bytes as stored + each positive saving; overhead (negative) is folded into stored."""
    parts = [Slice("stored", LABELS["stored"], max(physical, 0), PALETTE["stored"])]
    for key in ("file_dedup", "tensor_dedup", "chunk_dedup", "delta_coding", "plain_coding"):
        value = int(savings.get(key, 0))
        if value > 0:
            parts.append(Slice(key, LABELS[key], value, PALETTE[key]))
    return parts


def savings_bar(slices: Sequence[Slice], *, width: int = 760, height: int = 44) -> Markup:
    """One stacked bar: the uploaded bytes, split into what is stored and what each technique saved."""
    total = sum(s.value for s in slices)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="Where the bytes went" '
           f'xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    for s in slices:
        w = width * s.value / total if total else 0
        if w <= 0:
            continue
        title = f"{s.label}: {human_bytes(s.value)} ({100 * s.value / total:.1f}%)"
        out.append(f'<rect data-slice="{escape(s.key)}" x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" '
                   f'fill="{s.colour}"><title>{escape(title)}</title></rect>')
        if w > 70:
            out.append(f'<text x="{x + 10:.2f}" y="{height / 2 + 5}" class="bar-label">{escape(s.label)}</text>')
        x += w
    if not total:
        out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#e2e8f0"/>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str
    sublabel: str
    href: str | None
    # A node standing for children not drawn (collapsed): its href re-centres the picture.
    more: bool = False


@dataclass(frozen=True, slots=True)
class Edge:
    child: str
    base: str
    label: str


NODE_W, NODE_H, COL_GAP, ROW_GAP = 230, 46, 130, 18


def lineage_svg(nodes: Sequence[Node], edges: Sequence[Edge], roots: Sequence[str]) -> Markup:
    """Bases on the left, each fine-tune one column to the right of the file it is delta-coded against.

    Rows are assigned depth-first so a subtree stays together and no edge crosses a sibling's subtree.
    """
    by_id = {n.id: n for n in nodes}
    children: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        if e.child in by_id and e.base in by_id:
            children[e.base].append(e.child)
    pos: dict[str, tuple[float, float]] = {}
    row = 0

    def place(node: str, depth: int) -> float:
        nonlocal row
        kids = [k for k in children.get(node, []) if k not in pos]
        pos[node] = (0, 0)  # guards against cycles while the subtree is placed
        if not kids:
            y = float(row * (NODE_H + ROW_GAP))
            row += 1
        else:
            ys = [place(k, depth + 1) for k in kids]
            y = (ys[0] + ys[-1]) / 2
        pos[node] = (depth * (NODE_W + COL_GAP), y)
        return y

    for r in list(roots) + [n.id for n in nodes]:
        if r in by_id and r not in pos:
            place(r, 0)
    width = int(max((x for x, _ in pos.values()), default=0) + NODE_W + 20)
    height = int(max((y for _, y in pos.values()), default=0) + NODE_H + 20)
    out = [f'<svg class="lineage" width="{width}" height="{height}" viewBox="-10 -10 {width} {height}" '
           f'role="img" aria-label="Family lineage" xmlns="http://www.w3.org/2000/svg">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>']
    for e in edges:
        if e.child not in pos or e.base not in pos:
            continue
        (bx, by), (cx, cy) = pos[e.base], pos[e.child]
        x1, y1, x2, y2 = bx + NODE_W, by + NODE_H / 2, cx, cy + NODE_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<g class="edge" data-base="{escape(e.base)}" data-child="{escape(e.child)}">'
                   f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2 - 2:.1f},{y2:.1f}" '
                   f'marker-end="url(#arrow)"/>')
        if e.label:
            out.append(f'<text x="{mid:.1f}" y="{y2 - 6:.1f}" text-anchor="middle">{escape(e.label)}</text>')
        out.append("</g>")
    for node_id, (x, y) in pos.items():
        n = by_id[node_id]
        cls = "node more" if n.more else "node"
        body = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="10"/>'
                f'<text x="{x + 12:.1f}" y="{y + 19:.1f}" class="node-label">{escape(_clip(n.label, 30))}</text>'
                f'<text x="{x + 12:.1f}" y="{y + 36:.1f}" class="node-sub">{escape(_clip(n.sublabel, 36))}</text>'
                f'<title>{escape(n.label)}</title>')
        if n.href:
            out.append(f'<a href="{escape(n.href)}" class="{cls}" data-node="{escape(n.id)}">{body}</a>')
        else:
            out.append(f'<g class="{cls}" data-node="{escape(n.id)}">{body}</g>')
    out.append("</svg>")
    return Markup("".join(out))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
