"""Prometheus text exposition of a node's stats, for the HTTP listener's `/metrics`.

Stats arrive as a nested dict of numbers (components' `stats()`); each numeric leaf becomes one
gauge named `qnode_<path>` (STYLE.md §2.7 naming). Per-queue sections become a `queue` label.
Nothing here keeps state; the node calls it per scrape.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(parts: list[str]) -> str:
    return "qnode_" + "_".join(_NAME_BAD.sub("_", p) for p in parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(stats: Mapping[str, Any]) -> str:
    """Flatten `stats` to `name{labels} value` lines. `stats["queues"]` may map queue name -> dict."""
    lines: list[str] = []
    seen_types: set[str] = set()

    def emit(name: str, labels: str, value: float) -> None:
        if name not in seen_types:
            seen_types.add(name)
            lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name}{labels} {value}")

    def walk(prefix: list[str], node: Any, labels: str) -> None:
        if isinstance(node, bool):
            emit(_metric_name(prefix), labels, int(node))
        elif isinstance(node, (int, float)):
            emit(_metric_name(prefix), labels, node)
        elif isinstance(node, Mapping):
            for key in sorted(node, key=str):
                walk(prefix + [str(key)], node[key], labels)

    for key in sorted(stats, key=str):
        value = stats[key]
        if key == "queues" and isinstance(value, Mapping):
            for queue in sorted(value):
                walk(["queue"], value[queue], f'{{queue="{_escape(str(queue))}"}}')
        else:
            walk([str(key)], value, "")
    return "\n".join(lines) + "\n"
