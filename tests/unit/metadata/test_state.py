"""MetadataState tests: deterministic apply of commands, errors as results, snapshot/restore.
Method: apply encoded commands at increasing Raft indexes and inspect results and state; compare
two states fed the same commands byte-for-byte through their snapshots.
"""

from __future__ import annotations

import msgpack

from qnode.metadata import commands as c
from qnode.metadata.state import MetadataState
from qnode.protocol.errors import ErrorCode


def apply_all(state: MetadataState, cmds: list) -> list:
    return [state.apply(state.applied_index + 1, cmd.encode()) for cmd in cmds]


def test_create_queue_is_idempotent_for_identical_attributes():
    s = MetadataState()
    r1, r2 = apply_all(s, [c.create_queue("q", {"VisibilityTimeout": "30"}, created_ms=5),
                           c.create_queue("q", {"VisibilityTimeout": "30"}, created_ms=9)])
    assert r1.ok and r2.ok
    assert r2.value.created_ms == 5
    assert s.list_queues() == ["q"]


def test_create_queue_with_other_attributes_is_a_conflict_result():
    s = MetadataState()
    _, r = apply_all(s, [c.create_queue("q", {"a": "1"}), c.create_queue("q", {"a": "2"})])
    assert r.error_code is ErrorCode.QUEUE_ALREADY_EXISTS
    assert s.get_queue("q").attributes == {"a": "1"}


def test_delete_missing_queue_is_queue_does_not_exist():
    s = MetadataState()
    (r,) = apply_all(s, [c.delete_queue("nope")])
    assert r.error_code is ErrorCode.QUEUE_DOES_NOT_EXIST


def test_attributes_and_tags_update():
    s = MetadataState()
    apply_all(s, [c.create_queue("q", {"a": "1"}, {"t": "x"}), c.set_queue_attributes("q", {"b": "2"}),
                  c.tag_queue("q", {"u": "y"}), c.untag_queue("q", ["t"])])
    q = s.get_queue("q")
    assert q.attributes == {"a": "1", "b": "2"}
    assert q.tags == {"u": "y"}


def test_partitions_follow_their_queue_and_epochs_never_decrease():
    s = MetadataState()
    rs = apply_all(s, [c.create_queue("q"), c.set_partition("q/0", "q", ["b1", "b2"], "b1", 2, ["b1"]),
                       c.set_partition("q/0", "q", ["b1", "b2"], "b2", 1, ["b2"]),
                       c.set_partition("q/1", "q", ["b1"], "b9", 1, [])])
    assert rs[1].ok
    assert rs[2].error_code is ErrorCode.INVALID_PARAMETER     # older epoch
    assert rs[3].error_code is ErrorCode.INVALID_PARAMETER     # leader not a replica
    assert s.partitions["q/0"].leader == "b1"
    apply_all(s, [c.delete_queue("q")])
    assert s.partitions == {}


def test_garbage_and_unknown_commands_are_results_not_crashes():
    s = MetadataState()
    r1 = s.apply(1, b"\xc1garbage")
    r2 = s.apply(2, msgpack.packb(["launch_rockets", {}]))
    r3 = s.apply(3, msgpack.packb(["create_queue", {"nam": "x"}]))
    assert r1.error_code is ErrorCode.INVALID_PARAMETER
    assert r2.error_code is ErrorCode.UNKNOWN_OPERATION
    assert r3.error_code is ErrorCode.INVALID_PARAMETER
    assert s.applied_index == 3


def test_members_are_tracked():
    s = MetadataState()
    apply_all(s, [c.set_member("n1", "10.0.0.1:7700", ["metadata", "backend"]), c.set_member("n2", "h:1", []),
                  c.remove_member("n2")])
    assert sorted(s.members) == ["n1"]
    assert s.members["n1"].roles == ("backend", "metadata")


def test_snapshot_round_trip_and_determinism():
    cmds = [c.create_queue("b", {"x": "1"}, {"k": "v"}), c.create_queue("a"),
            c.set_partition("a/0", "a", ["n2", "n1"], "n1", 3, ["n1"]), c.set_member("n1", "h:1", ["metadata"])]
    s1, s2 = MetadataState(), MetadataState()
    apply_all(s1, cmds)
    apply_all(s2, cmds)
    assert s1.snapshot() == s2.snapshot()
    restored = MetadataState.restore(s1.snapshot())
    assert restored.snapshot() == s1.snapshot()
    assert restored.get_queue("b").tags == {"k": "v"}
    assert restored.applied_index == 4


from hypothesis import given, settings, strategies as st  # noqa: E402

_names = st.sampled_from(["a", "b", "c"])
_maps = st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["1", "2"]), max_size=2)
_commands = st.one_of(
    st.builds(c.create_queue, _names, _maps, _maps),
    st.builds(c.delete_queue, _names),
    st.builds(c.set_queue_attributes, _names, _maps),
    st.builds(c.tag_queue, _names, _maps),
    st.builds(c.untag_queue, _names, st.lists(st.sampled_from(["x", "y"]), max_size=2)),
    st.builds(c.set_partition, st.sampled_from(["a/0", "b/0"]), _names, st.just(["n1", "n2"]),
              st.sampled_from([None, "n1", "n2"]), st.integers(0, 3), st.sampled_from([[], ["n1"]])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_commands, max_size=25), st.integers(0, 25))
def test_apply_is_deterministic_and_snapshots_resume_exactly(cmds, cut):
    """Two replicas applying the same commands agree; a replica restored from a snapshot taken
    mid-way and fed the rest ends in the same state and returns the same results."""
    full, other = MetadataState(), MetadataState()
    results_full = apply_all(full, cmds)
    results_other = apply_all(other, cmds)
    assert results_full == results_other
    assert full.snapshot() == other.snapshot()
    cut = min(cut, len(cmds))
    head = MetadataState()
    apply_all(head, cmds[:cut])
    resumed = MetadataState.restore(head.snapshot())
    assert apply_all(resumed, cmds[cut:]) == results_full[cut:]
    assert resumed.snapshot() == full.snapshot()
