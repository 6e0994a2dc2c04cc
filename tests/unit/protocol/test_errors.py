"""The error-code table is a wire contract: numbers and names never change or get reused.

Method: a frozen snapshot of (name, number) pairs; every frozen code must still exist with the
same number, and codes added later must sit in a valid range above every frozen code of that
range (append-only). Also checks the code <-> exception class mapping in both directions and
the error-frame round trip (`to_wire` / `error_from_wire`).
"""

from __future__ import annotations

import pytest

from qnode.protocol import errors
from qnode.protocol.errors import ErrorCode, QnodeError, error_for_code, error_from_wire

FROZEN = {
    "INVALID_PARAMETER": 1000, "MISSING_PARAMETER": 1001, "INVALID_QUEUE_NAME": 1002,
    "MESSAGE_TOO_LARGE": 1003, "INVALID_MESSAGE_CONTENTS": 1004, "INVALID_ATTRIBUTE_NAME": 1005,
    "INVALID_ATTRIBUTE_VALUE": 1006, "RECEIPT_HANDLE_IS_INVALID": 1007,
    "MESSAGE_NOT_INFLIGHT": 1008, "EMPTY_BATCH_REQUEST": 1009, "TOO_MANY_ENTRIES_IN_BATCH": 1010,
    "BATCH_ENTRY_IDS_NOT_DISTINCT": 1011, "INVALID_BATCH_ENTRY_ID": 1012,
    "BATCH_REQUEST_TOO_LONG": 1013, "UNSUPPORTED_VERSION": 1014, "PROTOCOL_ERROR": 1015,
    "UNSUPPORTED_OPERATION": 1016, "INVALID_SIGNATURE": 1017, "ACCESS_DENIED": 1018,
    "INVALID_CLIENT_TOKEN_ID": 1019, "REQUEST_EXPIRED": 1020, "UNKNOWN_OPERATION": 1021,
    "THROTTLED": 2000, "QUEUE_FULL": 2001, "OVER_LIMIT": 2002, "TOO_MANY_WAITERS": 2003,
    "FRAME_TOO_LARGE": 2004, "DISK_FULL": 2005, "PURGE_QUEUE_IN_PROGRESS": 2006, "BUSY": 2007,
    "NOT_LEADER": 3000, "UNAVAILABLE": 3001, "SHUTTING_DOWN": 3002,
    "QUEUE_DOES_NOT_EXIST": 4000, "QUEUE_ALREADY_EXISTS": 4001, "QUEUE_DELETED_RECENTLY": 4002,
    "RESOURCE_NOT_FOUND": 4003, "MESSAGE_NOT_FOUND": 4004,
    "INTERNAL": 5000, "WAL_CORRUPTION": 5001, "TIMEOUT": 5002,
}


def test_frozen_codes_keep_their_names_and_numbers():
    current = {c.name: int(c) for c in ErrorCode}
    for name, number in FROZEN.items():
        assert current.get(name) == number, f"{name} was renamed or renumbered"


def test_new_codes_are_appended_inside_a_valid_range():
    frozen_numbers = set(FROZEN.values())
    for code in ErrorCode:
        if code.name in FROZEN:
            continue
        assert int(code) not in frozen_numbers, f"{code.name} reuses a frozen number"
        rng = int(code) // 1000
        assert 1 <= rng <= 5, f"{code.name} is outside the 1xxx..5xxx ranges"
        frozen_in_range = [n for n in frozen_numbers if n // 1000 == rng]
        assert int(code) > max(frozen_in_range), f"{code.name} is not appended at the end of its range"


def test_numbers_are_unique():
    numbers = [int(c) for c in ErrorCode]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_for_code_round_trips(code):
    cls = error_for_code(int(code))
    assert issubclass(cls, QnodeError)
    assert cls.code is code
    exc = cls("boom", retry_after_ms=7, leader_hint="10.0.0.1:7700")
    back = error_from_wire(exc.to_wire())
    assert type(back) is cls
    assert back.code is code
    assert back.message == "boom"
    assert back.retry_after_ms == 7
    assert back.leader_hint == "10.0.0.1:7700"


def test_unknown_code_maps_to_internal_error():
    assert error_for_code(9999) is errors.InternalError
    assert error_from_wire({"code": 9999, "message": "?"}).code is ErrorCode.INTERNAL


def test_error_frame_leaves_out_absent_optional_fields():
    assert errors.QueueDoesNotExist("no such queue").to_wire() == {
        "code": 4000, "message": "no such queue"}


def test_every_class_is_exported_by_the_package():
    import qnode
    for code in ErrorCode:
        cls = error_for_code(int(code))
        assert getattr(qnode, cls.__name__) is cls
