"""The SQS API as `qnode start` serves it: a real node process configured through the
environment (QNODE_ACCESS_KEYS, QNODE_ACCOUNT_ID) with its HTTP listener on 127.0.0.1:0.
Checks that the node wires credentials and the account id into the listener (SigV4 accepted
with the right secret, refused otherwise; URLs and ARNs carry the account), and that /healthz and
/metrics answer. Method: NodeProcess from tests/integration/nodeproc.py, boto3 in a thread."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.integration.nodeproc import NodeProcess

ACCOUNT = "123456789012"


@pytest.fixture
def keyed_node(tmp_path):
    proc = NodeProcess(tmp_path / "data", http=True, env={
        "QNODE_ACCESS_KEYS": "AKIDNODE:node-secret", "QNODE_ACCOUNT_ID": ACCOUNT}).start()
    yield proc
    try:
        proc.stop()
    finally:
        proc.kill()


async def test_node_serves_signed_sqs_with_its_account(keyed_node):
    url = f"http://{keyed_node.http_address}"

    def run():
        import boto3
        from botocore.config import Config

        def mk(key: str, secret: str):
            return boto3.session.Session().client(
                "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))

        good = mk("AKIDNODE", "node-secret")
        q = good.create_queue(QueueName="signed")["QueueUrl"]
        assert q == f"{url}/{ACCOUNT}/signed"
        arn = good.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]
        assert arn["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:signed"
        good.send_message(QueueUrl=q, MessageBody="signed body")
        [m] = good.receive_message(QueueUrl=q, WaitTimeSeconds=5)["Messages"]
        assert m["Body"] == "signed body"
        with pytest.raises(ClientError) as info:
            mk("AKIDNODE", "wrong").list_queues()
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        with pytest.raises(ClientError) as info:
            mk("AKIDOTHER", "node-secret").list_queues()
        assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"
        with pytest.raises(good.exceptions.QueueDoesNotExist):
            good.send_message(QueueUrl=f"{url}/000000000000/signed", MessageBody="x")
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert "qnode_http_inflight_requests" in text
        assert "qnode_raft_is_leader 1" in text          # the one-member metadata group
        assert "qnode_raft_compaction_failures 0" in text
        assert "qnode_raft_stopped 0" in text
    await asyncio.to_thread(run)
