"""`ClusterQueues` on a one-member metadata group with a real backend, in one process
(qnode/cluster/queues.py). Method: a `MetadataNode` (voters = itself, no SWIM) plus a
`BackendService` in tmp_path, driven through the QueueApi. Checks that definitions are validated
like the engine does, stored in metadata, materialized into the backend before the call returns,
and that removal markers, permissions and message delegation behave."""

from __future__ import annotations

import json

import pytest

from qnode.backend.service import BackendConfig, BackendService
from qnode.cluster.materialize import Materializer
from qnode.cluster.metanode import MetadataNode
from qnode.cluster.queues import ClusterQueues
from qnode.cluster.transport import PeerPool
from qnode.frontend.api import SendEntry
from qnode.protocol.errors import (
    InvalidParameter, QnodeError, QueueAlreadyExists, QueueDoesNotExist, Unavailable,
)


@pytest.fixture
async def api(tmp_path):
    backend = await BackendService.open(tmp_path / "queues", BackendConfig())
    meta = MetadataNode("n1", tmp_path, bootstrap_expect=0, has_seeds=False, pool=PeerPool("n1"))
    mat = Materializer(backend, lambda: meta.store.state)
    await meta.start()
    meta.store.watch(mat.on_apply)
    mat.start()
    assert await meta.wait_leader(5)
    yield ClusterQueues(meta, backend, mat, region="us-east-1", account_id="000000000000")
    await mat.close()
    await backend.close()
    await meta.stop()


async def test_create_is_stored_in_metadata_and_materialized(api):
    info = await api.create_queue("jobs", {"VisibilityTimeout": "0045"}, {"team": "a"})
    assert info.attributes["VisibilityTimeout"] == "45"          # canonical, as the engine stores it
    assert api.meta.store.state.get_queue("jobs").attributes == {"VisibilityTimeout": "45"}
    assert await api.backend.list_queues() == ["jobs"]
    assert (await api.create_queue("jobs", {"VisibilityTimeout": "45"})).name == "jobs"
    assert (await api.create_queue("jobs")).name == "jobs"          # no attributes: matches
    with pytest.raises(QueueAlreadyExists):
        await api.create_queue("jobs", {"VisibilityTimeout": "46"})
    res = await api.send_messages("jobs", [SendEntry(body=b"x")])
    assert not isinstance(res[0], QnodeError)
    await api.delete_queue("jobs")
    assert await api.list_queues() == [] and await api.backend.list_queues() == []
    with pytest.raises(QueueDoesNotExist):
        await api.delete_queue("jobs")


async def test_validation_matches_the_engine(api):
    with pytest.raises(QnodeError):
        await api.create_queue("bad name!")
    with pytest.raises(QnodeError):
        await api.create_queue("q", {"VisibilityTimeout": "99999"})
    with pytest.raises(InvalidParameter):
        await api.create_queue("q.fifo")                            # needs FifoQueue=true
    policy = json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:nope",
                         "maxReceiveCount": 3})
    with pytest.raises(InvalidParameter):
        await api.create_queue("src", {"RedrivePolicy": policy})
    assert await api.list_queues() == []


async def test_attribute_removal_tags_and_permissions(api):
    await api.create_queue("dlq")
    policy = json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq",
                         "maxReceiveCount": 3})
    await api.create_queue("src", {"RedrivePolicy": policy})
    assert "RedrivePolicy" in await api.backend.get_queue_attributes("src", ["All"])
    await api.set_queue_attributes("src", {"RedrivePolicy": ""})
    assert "RedrivePolicy" not in (await api.get_queue("src")).attributes
    assert "RedrivePolicy" not in await api.backend.get_queue_attributes("src", ["All"])
    await api.tag_queue("src", {"a": "1", "b": "2"})
    await api.untag_queue("src", ["a"])
    assert await api.list_queue_tags("src") == {"b": "2"}
    assert await api.backend.list_queue_tags("src") == {"b": "2"}
    await api.add_permission("src", "p1", ["111111111111"], ["SendMessage"])
    assert "p1" in (await api.get_queue_attributes("src", ["Policy"]))["Policy"]
    await api.remove_permission("src", "p1")
    assert "Policy" not in await api.get_queue_attributes("src", ["All"])


async def test_message_operations_need_the_backend_role(api):
    await api.create_queue("m")
    metadata_only = ClusterQueues(api.meta, None, None, region="us-east-1", account_id="000000000000")
    assert await metadata_only.list_queues() == ["m"]
    with pytest.raises(Unavailable):
        await metadata_only.send_messages("m", [SendEntry(body=b"x")])
