"""Fixtures: the real aiohttp SQS listener over the in-memory FakeApi on 127.0.0.1:0, in the
test's event loop; boto3 clients run in threads (`asyncio.to_thread`) against it."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from qnode.frontend.http import HttpConfig, HttpServer
from tests.unit.sqs.fake_api import FakeApi

ACCESS_KEY = "AKIDQNODETEST"
SECRET_KEY = "qnode-test-secret"


def make_client(url: str, *, key: str = "fake", secret: str = "fake", region: str = "us-east-1"):
    return boto3.session.Session().client(
        "sqs", endpoint_url=url, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=30))


@pytest.fixture
async def gateway():
    api = FakeApi()
    server = HttpServer(api, HttpConfig())
    host, port = await server.start("127.0.0.1", 0)
    yield f"http://{host}:{port}", api, server
    await server.stop()


@pytest.fixture
async def signed_gateway():
    api = FakeApi()
    server = HttpServer(api, HttpConfig(credentials={ACCESS_KEY: SECRET_KEY}))
    host, port = await server.start("127.0.0.1", 0)
    yield f"http://{host}:{port}", api, server
    await server.stop()
