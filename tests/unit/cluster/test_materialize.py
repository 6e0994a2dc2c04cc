"""Materializing metadata queue definitions into a real local backend (qnode/cluster/materialize.py).

Method: a `MetadataState` applied by hand (as Raft would, in order) feeds the watcher of a
`Materializer` over a real `BackendService` in tmp_path; after `settle()` the backend must hold
exactly what metadata says: creation, attribute change and removal (the "" marker), tags,
deletion, and a full reconcile that deletes a queue metadata does not have."""

from __future__ import annotations

from qnode.backend.service import BackendConfig, BackendService
from qnode.cluster.materialize import Materializer, clean
from qnode.metadata import commands
from qnode.metadata.state import MetadataState


class Feed:
    def __init__(self, mat: Materializer, state: MetadataState) -> None:
        self.mat, self.state, self.index = mat, state, 0

    def apply(self, cmd: commands.Command) -> None:
        self.index += 1
        result = self.state.apply(self.index, cmd.encode())
        assert result.ok, result
        self.mat.on_apply(self.index, cmd, result)


async def test_changes_follow_metadata_and_reconcile_removes_extras(tmp_path):
    backend = await BackendService.open(tmp_path / "queues", BackendConfig())
    state = MetadataState()
    mat = Materializer(backend, lambda: state)
    feed = Feed(mat, state)
    mat.start()
    try:
        feed.apply(commands.create_queue("dlq", {}))
        feed.apply(commands.create_queue("src", {"VisibilityTimeout": "40"}, {"t": "1"}))
        policy = '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}'
        feed.apply(commands.set_queue_attributes("src", {"RedrivePolicy": policy}))
        feed.apply(commands.tag_queue("src", {"u": "2"}))
        await mat.settle()
        assert await backend.list_queues() == ["dlq", "src"]
        attrs = await backend.get_queue_attributes("src", ["All"])
        assert attrs["VisibilityTimeout"] == "40" and "RedrivePolicy" in attrs
        assert await backend.list_queue_tags("src") == {"t": "1", "u": "2"}
        feed.apply(commands.set_queue_attributes("src", {"RedrivePolicy": ""}))
        feed.apply(commands.untag_queue("src", ["t"]))
        feed.apply(commands.delete_queue("dlq"))
        await mat.settle()
        assert "RedrivePolicy" not in await backend.get_queue_attributes("src", ["All"])
        assert clean(state.get_queue("src").attributes) == {"VisibilityTimeout": "40"}
        assert await backend.list_queue_tags("src") == {"u": "2"}
        assert await backend.list_queues() == ["src"]
        await backend.create_queue("stray", {})
        await mat.reconcile_all(delete_extra=False)
        assert await backend.list_queues() == ["src", "stray"]
        await mat.reconcile_all(delete_extra=True)
        assert await backend.list_queues() == ["src"]
    finally:
        await mat.close()
        await backend.close()


def test_changed_queues_diffs_two_states():
    from qnode.cluster.remote import changed_queues

    def state(*cmds):
        s = MetadataState()
        for i, cmd in enumerate(cmds, 1):
            assert s.apply(i, cmd.encode()).ok
        return s

    old = state(commands.create_queue("a"), commands.create_queue("b"), commands.create_queue("c"))
    new = state(commands.create_queue("a"), commands.create_queue("b"), commands.create_queue("c"),
                commands.delete_queue("b"), commands.tag_queue("c", {"k": "v"}), commands.create_queue("d"))
    assert changed_queues(old, new) == [("b", "delete_queue"), ("c", "set_queue_attributes"),
                                        ("d", "create_queue")]
    recreated = state(commands.create_queue("x"), commands.create_queue("a"))   # "a" at another index
    assert ("a", "create_queue") in changed_queues(old, recreated)
