"""Queue-name validation shared by both listeners (SQS rule: 1..80 of [A-Za-z0-9_-], FIFO
names end in .fifo within the 80). Method: a table of valid and invalid names."""

from __future__ import annotations

import pytest

from qnode.frontend.validation import is_fifo_name, validate_queue_name
from qnode.protocol.errors import ErrorCode, QnodeError


@pytest.mark.parametrize("name", ["a", "jobs", "A-b_9", "x" * 80, "orders.fifo", "y" * 75 + ".fifo"])
def test_valid_names(name):
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 81, "y" * 76 + ".fifo", "has space", "dot.name", ".fifo",
                                  "uni\u00e9", "a/b", None, 5, b"bytes", "a.fifo.fifo"])
def test_invalid_names(name):
    with pytest.raises(QnodeError) as info:
        validate_queue_name(name)
    assert info.value.code is ErrorCode.INVALID_QUEUE_NAME


def test_fifo_flag():
    assert validate_queue_name("q.fifo", fifo=True) == "q.fifo"
    with pytest.raises(QnodeError):
        validate_queue_name("q", fifo=True)
    with pytest.raises(QnodeError):
        validate_queue_name("q.fifo", fifo=False)
    assert is_fifo_name("q.fifo")
    assert not is_fifo_name("q")
