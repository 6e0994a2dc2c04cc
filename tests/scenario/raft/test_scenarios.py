"""Datadriven Raft scenarios (etcd raft `testdata/*.txt` style): each `.txt` file in this folder
is a script of commands, each followed by `----` and the expected output (status lines of the
affected nodes). Goal: readable end-to-end stories (elections, partitions, truncation, snapshots,
membership changes) whose full observable outcome is pinned. Method: replay each script on
`tests.unit.metadata.raftnet.Net` and compare outputs; `QNODE_REWRITE=1 pytest tests/scenario`
rewrites the expected blocks from the actual output (review the diff!).

Commands:
  net n1 n2 n3                 build a cluster (all voters)
  campaign n1                  tick n1 until it campaigns, then stabilize
  propose n1 <data>...         propose each word on n1 (prints the error on failure)
  stabilize                    deliver everything
  tick n1 [k]                  tick n1 k times (default 1), no delivery
  tick-all [k]                 tick every live node k times, stabilizing after each round
  isolate n1 | heal            cut n1 off / restore every link
  crash n1                     power loss: restart n1 from its durable records
  compact n1                   snapshot n1 at its applied index and drop the log prefix
  add n4 via n1 | remove n4 via n1   single-server membership change proposed on n1
  join n4                      create an empty node n4 (joins with no peers)
  read n1 <ctx>                ReadIndex on n1; prints the read states n1 has produced
  status [n1 ...]              status lines (all nodes by default)
  log n1                       n1's entries as index/term:data
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qnode.metadata.raft.messages import ConfChange, ConfChangeOp
from qnode.protocol.errors import QnodeError
from tests.unit.metadata.raftnet import Net

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.txt"))


def _status(net: Net, ids: list[str]) -> str:
    return "\n".join(net.cores[i].status().line() for i in ids)


def run_command(net_box: list, line: str) -> str:
    words = line.split()
    cmd, args = words[0], words[1:]
    net: Net | None = net_box[0] if net_box else None
    if cmd == "net":
        net_box[:] = [Net(args)]
        return _status(net_box[0], sorted(args))
    assert net is not None, "first command must be `net`"
    everyone = sorted(net.cores)
    if cmd == "campaign":
        net.elect(args[0])
        return _status(net, everyone)
    if cmd == "propose":
        out = []
        for data in args[1:]:
            try:
                index, term = net.cores[args[0]].propose(data.encode())
                out.append(f"{data} -> index={index} term={term}")
            except QnodeError as exc:
                out.append(f"{data} -> {exc.code.name} hint={exc.leader_hint}")
        return "\n".join(out)
    if cmd == "stabilize":
        net.stabilize()
        return _status(net, everyone)
    if cmd == "tick":
        net.tick(args[0], int(args[1]) if len(args) > 1 else 1)
        return _status(net, [args[0]])
    if cmd == "tick-all":
        for _ in range(int(args[0]) if args else 1):
            for i in everyone:
                if i not in net.down:
                    net.tick(i)
            net.stabilize()
        return _status(net, everyone)
    if cmd == "isolate":
        net.isolate(args[0])
        return "ok"
    if cmd == "heal":
        net.heal()
        return "ok"
    if cmd == "crash":
        net.crash(args[0])
        return _status(net, [args[0]])
    if cmd == "compact":
        core = net.cores[args[0]]
        snap = core.compact(core.log.applied, f"state@{core.log.applied}".encode())
        net.storages[args[0]].save_snapshot(snap)
        return _status(net, [args[0]])
    if cmd in ("add", "remove"):
        op = ConfChangeOp.ADD_VOTER if cmd == "add" else ConfChangeOp.REMOVE_VOTER
        try:
            index, term = net.cores[args[2]].propose_conf_change(ConfChange(op, args[0]))
            return f"{cmd} {args[0]} -> index={index} term={term}"
        except QnodeError as exc:
            return f"{cmd} {args[0]} -> {exc.code.name}"
    if cmd == "join":
        net.add_node(args[0])
        return _status(net, [args[0]])
    if cmd == "read":
        try:
            net.cores[args[0]].read_index(int(args[1]))
        except QnodeError as exc:
            return f"{exc.code.name} hint={exc.leader_hint}"
        net.stabilize()
        return "read states: " + " ".join(f"ctx={r.ctx}@{r.index}" for r in net.read_states[args[0]])
    if cmd == "status":
        return _status(net, args or everyone)
    if cmd == "log":
        core = net.cores[args[0]]
        return " ".join(f"{e.index}/{e.term}:{e.data.decode(errors='replace') or '-'}" for e in core.log.entries) or "(empty)"
    raise AssertionError(f"unknown command {cmd!r}")


def parse(text: str) -> list[tuple[str, str]]:
    """Blocks of `command\\n----\\nexpected output\\n` separated by blank lines; # comments."""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.startswith("#")]
        if not lines:
            continue
        assert "----" in lines, f"missing ---- in block: {chunk!r}"
        sep = lines.index("----")
        assert sep == 1, f"one command per block: {chunk!r}"
        blocks.append((lines[0], "\n".join(lines[sep + 1:])))
    return blocks


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_scenario(script: Path):
    blocks = parse(script.read_text())
    net_box: list = []
    actual = [(cmd, run_command(net_box, cmd)) for cmd, _ in blocks]
    if os.environ.get("QNODE_REWRITE") == "1":
        script.write_text("\n\n".join(f"{c}\n----\n{out}" for c, out in actual) + "\n")
        return
    for (cmd, expected), (_, got) in zip(blocks, actual):
        assert got == expected, f"{script.name}: `{cmd}`\n--- expected\n{expected}\n--- got\n{got}"
