"""Fixtures for tests that drive real `qnode start` processes on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import pytest

from tests.integration.nodeproc import NodeProcess


@pytest.fixture
def node(tmp_path, request):
    """A running single node (all roles) with the HTTP listener off; stopped after the test."""
    proc = NodeProcess(tmp_path / "data").start()
    yield proc
    try:
        proc.stop()
    finally:
        proc.kill()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print("\n".join(proc.log))


@pytest.fixture
def http_node(tmp_path):
    """A running single node with both listeners on ephemeral ports."""
    proc = NodeProcess(tmp_path / "data", http=True).start()
    yield proc
    try:
        proc.stop()
    finally:
        proc.kill()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
