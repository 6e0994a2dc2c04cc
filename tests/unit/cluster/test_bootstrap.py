"""The bootstrap rule of the metadata group (qnode/cluster/bootstrap.py): who forms the first
Raft group with whom, and the persisted voter set. Method: the pure decision function over
member views, including views that differ between nodes; file round trips in tmp_path."""

from __future__ import annotations

import pytest

from qnode.cluster import bootstrap


def test_no_seeds_and_no_expect_forms_a_one_member_group_at_once():
    assert bootstrap.initial_voters("n1", 0, False, []) == ("n1",)


def test_seeds_without_expect_never_bootstraps():
    assert bootstrap.initial_voters("n1", 0, True, ["n1", "n2", "n3"]) is None


def test_waits_until_the_expected_count_is_known():
    assert bootstrap.initial_voters("m1", 3, True, []) is None
    assert bootstrap.initial_voters("m1", 3, True, ["m2"]) is None
    assert bootstrap.initial_voters("m1", 3, True, ["m2", "m3"]) == ("m1", "m2", "m3")


def test_every_node_derives_the_same_set_and_nobody_forms_a_smaller_group():
    views = {"m1": ["m2", "m3"], "m2": ["m1", "m3"], "m3": ["m1", "m2", "m3"]}
    decided = {n: bootstrap.initial_voters(n, 3, True, v) for n, v in views.items()}
    assert set(decided.values()) == {("m1", "m2", "m3")}
    # Two of three met: neither forms a group of two (or of one).
    assert bootstrap.initial_voters("m1", 3, True, ["m2"]) is None


def test_a_node_outside_the_n_smallest_ids_does_not_bootstrap():
    members = ["a", "b", "c", "d"]
    assert bootstrap.initial_voters("a", 3, True, members) == ("a", "b", "c")
    assert bootstrap.initial_voters("d", 3, True, members) is None


def test_voters_file_round_trip_and_damage(tmp_path):
    assert bootstrap.load_voters(tmp_path) is None
    bootstrap.store_voters(tmp_path, ("m1", "m2", "m3"))
    assert bootstrap.load_voters(tmp_path) == ("m1", "m2", "m3")
    (tmp_path / bootstrap.VOTERS_FILE).write_text('{"voters": []}')
    with pytest.raises(ValueError):
        bootstrap.load_voters(tmp_path)


def test_expect_beyond_the_bound_is_refused():
    with pytest.raises(ValueError):
        bootstrap.initial_voters("m1", bootstrap.voters_count_max + 1, True, [])
