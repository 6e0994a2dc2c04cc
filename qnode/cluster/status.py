"""Cluster status as an operator sees it: gathered from the nodes, merged, and rendered.

Owns: `gather(addresses)` (ask the first node that answers for its member list, then every
metadata member for its own Raft position, concurrently and with a deadline), `merge(views)`
(a pure function: leader and term from the members' own answers, the highest term wins) and
`render_table(status)`. The JSON shape (`qnode cluster status --json`) is
    {"leader": ID | null, "term": N, "leader_address": ADDR | null, "queried": ADDR,
     "members": [{"id", "address", "roles", "state", "cell",
                  "raft": {"role", "term", "commit", "applied", "last_index"} | null}]}
A member that does not answer keeps `raft: null` (its SWIM state says why).
"""

from __future__ import annotations

import asyncio
from qnode.client.connection import ClientConnection
from qnode.protocol.errors import QnodeError, Unavailable
from qnode.protocol.framing import FrameLimits

query_timeout_s = 2.0
members_count_max = 256


async def query(address: str, timeout_s: float = query_timeout_s) -> dict:
    """One node's `cluster_status` view. Raises Unavailable when it does not answer."""
    host, _, port = address.rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            conn = await ClientConnection.open(host.strip("[]"), int(port), frame_limits=FrameLimits(),
                                               client_name="qnode-cluster-status")
            try:
                reply = await conn.request("cluster_status", {})
            finally:
                conn.close()
    except (OSError, TimeoutError, ValueError) as exc:
        raise Unavailable(f"no qnode node answered at {address} ({type(exc).__name__})") from None
    if not isinstance(reply, dict):
        raise Unavailable(f"bad cluster_status reply from {address}")
    return reply


async def _try(address: str, timeout_s: float) -> dict | None:
    try:
        return await query(address, timeout_s)
    except QnodeError:
        return None


async def gather(addresses: list[str], timeout_s: float = query_timeout_s) -> dict:
    first: dict | None = None
    queried = ""
    last: QnodeError | None = None
    for address in addresses:
        try:
            first = await query(address, timeout_s)
        except QnodeError as exc:
            last = exc
            continue
        queried = address
        break
    if first is None:
        why = f" (last error: {last.code.name}: {last.message})" if last is not None else ""
        raise Unavailable(f"no cluster status from {', '.join(addresses)}{why}")
    members = list(first.get("members") or [])[:members_count_max]
    if not members:
        members = [{"id": first.get("node_id"), "address": first.get("address") or queried,
                    "roles": ["metadata"], "state": "alive", "cell": ""}]
    views: dict[str, dict] = {str(first.get("node_id")): first}
    others = [m for m in members if m.get("id") not in views and "metadata" in (m.get("roles") or [])
              and m.get("state") in ("alive", "suspect")]
    answers = await asyncio.gather(*(_try(str(m.get("address")), timeout_s) for m in others))
    for m, view in zip(others, answers):
        if view is not None:
            views[str(m.get("id"))] = view
    return merge(members, views, queried)


def merge(members: list[dict], views: dict[str, dict], queried: str) -> dict:
    """Combine SWIM members and per-node Raft views (pure)."""
    leader, term = None, 0
    # A stopped replica's view of the leader is stale: only running replicas are asked.
    live = {node_id: view for node_id, view in views.items()
            if not (view.get("raft") or {}).get("failure")}
    for node_id, view in sorted(live.items()):
        raft = view.get("raft") or {}
        t = raft.get("term") or 0
        if raft.get("role") == "leader" and t >= term:
            leader, term = node_id, t
    if leader is None:
        for view in live.values():
            raft = view.get("raft") or {}
            if (raft.get("term") or 0) > term or (raft.get("term") == term and leader is None):
                term, leader = raft.get("term") or 0, raft.get("leader")
    out_members = []
    leader_address = None
    for m in sorted(members, key=lambda m: str(m.get("id"))):
        view = views.get(str(m.get("id")))
        raft = None
        if view is not None and (view.get("raft") or {}).get("started"):
            r = view["raft"]
            raft = {k: r.get(k) for k in ("role", "term", "commit", "applied", "last_index",
                                          "compaction_failures", "failure")}
        if m.get("id") == leader:
            leader_address = m.get("address")
        out_members.append({"id": m.get("id"), "address": m.get("address"), "roles": list(m.get("roles") or []),
                            "state": m.get("state"), "cell": m.get("cell", ""), "raft": raft})
    return {"leader": leader, "term": term, "leader_address": leader_address, "queried": queried,
            "members": out_members}


def render_table(status: dict) -> str:
    lines = [f"leader: {status['leader'] or '-'}  term: {status['term']}  (asked {status['queried']})", ""]
    header = ("ID", "ADDRESS", "ROLES", "STATE", "RAFT", "TERM", "COMMIT", "APPLIED", "LAST")
    rows = [header]
    for m in status["members"]:
        r = m.get("raft") or {}
        role = "stopped" if r.get("failure") else str(r.get("role", "-"))
        rows.append((str(m["id"]), str(m["address"]), ",".join(m["roles"]), str(m["state"]),
                     role, str(r.get("term", "-")), str(r.get("commit", "-")),
                     str(r.get("applied", "-")), str(r.get("last_index", "-"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
