"""Merging per-node views into one cluster status (qnode/cluster/status.py). Method: the pure
`merge` over hand-built views: the leader's own claim in the highest term wins, a member that
did not answer keeps `raft: None`; the table lists every member."""

from __future__ import annotations

from qnode.cluster.status import merge, render_table

MEMBERS = [{"id": n, "address": f"127.0.0.1:{7700 + i}", "roles": ["metadata"], "state": s, "cell": "c"}
           for i, (n, s) in enumerate([("m2", "alive"), ("m1", "alive"), ("m3", "dead")])]


def view(node_id: str, role: str, term: int, leader: str | None, commit: int,
         failure: str | None = None) -> dict:
    return {"node_id": node_id, "raft": {"started": True, "role": role, "term": term, "leader": leader,
                                         "commit": commit, "applied": commit, "last_index": commit + 1,
                                         "compaction_failures": 0, "failure": failure}}


def test_leader_and_term_come_from_the_highest_term_claim():
    views = {"m1": view("m1", "follower", 4, "m2", 9), "m2": view("m2", "leader", 4, "m2", 10)}
    status = merge(MEMBERS, views, "127.0.0.1:7700")
    assert (status["leader"], status["term"]) == ("m2", 4)
    assert status["leader_address"] == "127.0.0.1:7700"
    assert [m["id"] for m in status["members"]] == ["m1", "m2", "m3"]
    by_id = {m["id"]: m for m in status["members"]}
    assert by_id["m2"]["raft"] == {"role": "leader", "term": 4, "commit": 10, "applied": 10, "last_index": 11,
                                   "compaction_failures": 0, "failure": None}
    assert by_id["m3"]["raft"] is None and by_id["m3"]["state"] == "dead"


def test_a_stale_leader_in_an_older_term_loses():
    views = {"m1": view("m1", "leader", 3, "m1", 5), "m2": view("m2", "leader", 5, "m2", 7)}
    assert merge(MEMBERS, views, "x")["leader"] == "m2"


def test_without_a_leader_claim_the_followers_hint_is_used():
    views = {"m1": view("m1", "follower", 6, "m3", 5)}
    status = merge(MEMBERS, views, "x")
    assert (status["leader"], status["term"]) == ("m3", 6)


def test_table_has_a_row_per_member():
    views = {"m2": view("m2", "leader", 2, "m2", 3)}
    text = render_table(merge(MEMBERS, views, "127.0.0.1:7700"))
    assert text.splitlines()[0].startswith("leader: m2  term: 2")
    rows = [line for line in text.splitlines() if line.startswith("m")]
    assert len(rows) == 3 and "leader" in rows[1]


def test_cli_exits_3_when_no_node_answers():
    from click.testing import CliRunner

    from qnode.cli import main

    result = CliRunner().invoke(main, ["cluster", "status", "--json", "--seeds", "127.0.0.1:1",
                                       "--timeout", "1"])
    assert result.exit_code == 3
    assert "no cluster status from 127.0.0.1:1" in result.output


def test_a_member_whose_metadata_group_stopped_shows_it():
    views = {"m1": view("m1", "follower", 2, "m2", 3, failure="OSError(5, 'Input/output error')"),
             "m2": view("m2", "leader", 2, "m2", 3)}
    status = merge(MEMBERS, views, "127.0.0.1:7700")
    by_id = {m["id"]: m for m in status["members"]}
    assert by_id["m1"]["raft"]["failure"] == "OSError(5, 'Input/output error')"
    row = next(line for line in render_table(status).splitlines() if line.startswith("m1 "))
    assert row.split()[4] == "stopped"


def test_a_stopped_replica_is_not_named_leader():
    views = {"m1": view("m1", "leader", 3, "m1", 5, failure="OSError(5, 'Input/output error')"),
             "m2": view("m2", "follower", 3, None, 5)}
    assert merge(MEMBERS, views, "x")["leader"] is None
