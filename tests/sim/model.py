"""Reference model of SQS queue semantics: the oracle for the engine's property tests.

Deliberately naive (dicts and linear scans, no indexes): a message is visible iff it is not
deleted, not expired (sent + retention > now) and visible_at <= now. FIFO adds: messages of a
group are delivered in send order, and a group with a message in flight delivers nothing.
Dedup: a key seen within the window returns the original id. Times are virtual epoch ms.
Nack: like ChangeMessageVisibility (only the latest receipt of an in-flight message), plus an
optional failure reason that sticks to the message; with no delay the redelivery backoff (by
receive count, last step repeats) decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelMessage:
    message_id: str
    body: bytes
    sent_ms: int
    visible_at_ms: int
    group_id: str | None = None
    receive_count: int = 0
    order: int = 0
    reason: str | None = None


@dataclass
class ModelQueue:
    retention_ms: int
    fifo: bool = False
    messages: dict[str, ModelMessage] = field(default_factory=dict)
    dedup: dict[str, tuple[str, int]] = field(default_factory=dict)   # key -> (id, expiry)
    next_order: int = 0

    # --- state ---------------------------------------------------------------------------
    def expire(self, now_ms: int) -> None:
        for mid in [mid for mid, m in self.messages.items() if m.sent_ms + self.retention_ms <= now_ms]:
            del self.messages[mid]

    def visible(self, now_ms: int) -> list[ModelMessage]:
        return [m for m in self.messages.values() if m.visible_at_ms <= now_ms]

    def inflight(self, now_ms: int) -> list[ModelMessage]:
        return [m for m in self.messages.values() if m.visible_at_ms > now_ms and m.receive_count > 0]

    def delayed(self, now_ms: int) -> list[ModelMessage]:
        return [m for m in self.messages.values() if m.visible_at_ms > now_ms and m.receive_count == 0]

    # --- operations ------------------------------------------------------------------------
    def send(self, message_id: str, body: bytes, now_ms: int, delay_ms: int = 0,
             group_id: str | None = None) -> None:
        self.messages[message_id] = ModelMessage(message_id, body, now_ms, now_ms + delay_ms,
                                                 group_id, 0, self.next_order)
        self.next_order += 1

    def dedup_hit(self, key: str, now_ms: int) -> str | None:
        hit = self.dedup.get(key)
        return hit[0] if hit is not None and hit[1] > now_ms else None

    def remember(self, key: str, message_id: str, now_ms: int, window_ms: int) -> None:
        self.dedup[key] = (message_id, now_ms + window_ms)

    def receive(self, message_id: str, now_ms: int, visibility_ms: int) -> int:
        m = self.messages[message_id]
        assert m.visible_at_ms <= now_ms, m
        m.receive_count += 1
        m.visible_at_ms = now_ms + visibility_ms
        return m.receive_count

    def delete(self, message_id: str, receive_count: int) -> bool:
        m = self.messages.get(message_id)
        if m is None or m.receive_count != receive_count:
            return False
        del self.messages[message_id]
        return True

    def change_visibility(self, message_id: str, receive_count: int, visibility_ms: int,
                          now_ms: int) -> str:
        """-> "ok" | "invalid" (gone or stale handle) | "not_inflight"."""
        m = self.messages.get(message_id)
        if m is None or m.receive_count != receive_count:
            return "invalid"
        if m.visible_at_ms <= now_ms:
            return "not_inflight"
        m.visible_at_ms = now_ms + visibility_ms
        return "ok"

    def nack(self, message_id: str, receive_count: int, delay_ms: int | None, reason: str | None,
             now_ms: int, backoff_ms: tuple[int, ...] = ()) -> str:
        """-> "ok" | "invalid" (gone or stale handle) | "not_inflight". `delay_ms=None`: backoff."""
        m = self.messages.get(message_id)
        if m is None or m.receive_count != receive_count:
            return "invalid"
        if m.visible_at_ms <= now_ms:
            return "not_inflight"
        if delay_ms is None:
            delay_ms = backoff_ms[min(m.receive_count, len(backoff_ms)) - 1] if backoff_ms else 0
        if reason is not None:
            m.reason = reason[:1024]
        m.visible_at_ms = now_ms + delay_ms
        return "ok"

    # --- FIFO ------------------------------------------------------------------------------
    def group_blocked(self, group_id: str, now_ms: int) -> bool:
        return any(m.group_id == group_id and m.receive_count > 0 and m.visible_at_ms > now_ms
                   for m in self.messages.values())

    def group_queue(self, group_id: str) -> list[ModelMessage]:
        return sorted((m for m in self.messages.values() if m.group_id == group_id),
                      key=lambda m: m.order)

    def fifo_receivable(self, now_ms: int) -> int:
        groups = {m.group_id for m in self.messages.values()}
        return sum(len(self.group_queue(g)) for g in groups if not self.group_blocked(g, now_ms))
