"""Test harness for the sans-IO engine: a virtual clock, an in-memory log with LSNs, and
restart by snapshot + replay. Not a test file itself."""

from __future__ import annotations

import random

from qnode.backend.engine import Delivery, Engine, EngineConfig
from qnode.frontend.api import SendEntry

T0 = 1_700_000_000_000


class Harness:
    def __init__(self, config: EngineConfig | None = None, seed: int = 1, now_ms: int = T0,
                 auto_durable: bool = True) -> None:
        self.config = config or EngineConfig()
        self.seed = seed
        self.now = now_ms
        self.auto_durable = auto_durable
        self.log: list[tuple[int, int, bytes]] = []       # (lsn, kind, body)
        self.lsn = 0
        self.durable = 0
        self.checkpoint: tuple[int, bytes] | None = None
        self.deliveries: dict[int, Delivery] = {}
        self.engine = self._fresh()
        self.engine.init_secret(bytes(range(32)))
        self.engine.start(self.now)
        self.flush()

    def _fresh(self) -> Engine:
        return Engine(self.config, random.Random(self.seed))

    # --- driving ---------------------------------------------------------------------------
    def flush(self) -> None:
        records = self.engine.take_records()
        for kind, body in records:
            self.lsn += 1
            self.log.append((self.lsn, kind, body))
        if records:
            self.engine.logged(self.lsn)
        if self.auto_durable:
            self.make_durable()
        for d in self.engine.take_deliveries():
            assert d.waiter_id not in self.deliveries
            self.deliveries[d.waiter_id] = d

    def make_durable(self) -> None:
        if self.durable < self.lsn:
            self.durable = self.lsn
            self.engine.on_durable(self.lsn, self.now)
            self.flush_records_only()

    def make_durable_upto(self, lsn: int) -> None:
        """The WAL reports durability up to `lsn` (<= the last appended LSN)."""
        assert self.durable <= lsn <= self.lsn
        if lsn > self.durable:
            self.durable = lsn
            self.engine.on_durable(lsn, self.now)
            self.flush_records_only()

    def flush_records_only(self) -> None:
        records = self.engine.take_records()
        for kind, body in records:
            self.lsn += 1
            self.log.append((self.lsn, kind, body))
        if records:
            self.engine.logged(self.lsn)
            if self.auto_durable:
                self.make_durable()
        for d in self.engine.take_deliveries():
            self.deliveries[d.waiter_id] = d

    def call(self, method: str, *args, **kwargs):
        try:
            return getattr(self.engine, method)(*args, **kwargs)
        finally:
            self.flush()

    def advance(self, ms: int) -> None:
        self.now += ms
        self.engine.tick(self.now)
        self.flush()

    # --- shortcuts ---------------------------------------------------------------------------
    def create(self, name: str, attrs: dict | None = None, tags: dict | None = None):
        return self.call("create_queue", name, attrs or {}, tags or {}, self.now)

    def send(self, name: str, *entries: SendEntry):
        return self.call("send", name, list(entries), self.now).results

    def send_body(self, name: str, body: bytes, **kw) -> str:
        result = self.send(name, SendEntry(body, **kw))[0]
        assert not isinstance(result, Exception), result
        return result.message_id

    def receive(self, name: str, n: int = 10, wait_ms: int = 0, vis_ms: int | None = None,
                delete: bool = False, attempt_id: str | None = None):
        out = self.call("receive", name, n, wait_ms, vis_ms, attempt_id, delete, self.now)
        return out

    def recv(self, name: str, n: int = 10, **kw) -> list:
        return list(self.receive(name, n, **kw).messages)

    def delete(self, name: str, *receipts: str) -> list:
        return self.call("delete", name, list(receipts), self.now)[0]

    def attrs(self, name: str) -> dict[str, str]:
        return self.engine.get_queue_attributes(name, ["All"], self.now)

    def counts(self, name: str) -> tuple[int, int, int]:
        a = self.attrs(name)
        return (int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]),
                int(a["ApproximateNumberOfMessagesDelayed"]))

    # --- restart -----------------------------------------------------------------------------
    def take_checkpoint(self) -> None:
        self.flush()
        self.checkpoint = (self.lsn, self.engine.snapshot())

    def recovered(self, upto_lsn: int | None = None) -> Engine:
        """A new engine rebuilt from the checkpoint (if any) and the log up to `upto_lsn`."""
        upto = self.lsn if upto_lsn is None else upto_lsn
        engine = self._fresh()
        start = 0
        if self.checkpoint is not None and self.checkpoint[0] <= upto:
            engine.restore(self.checkpoint[1])
            start = self.checkpoint[0]
        for lsn, kind, body in self.log:
            if start < lsn <= upto:
                engine.apply_record(kind, body)
        engine.start(self.now)
        return engine

    def restart(self, upto_lsn: int | None = None) -> None:
        """Crash-restart: keep only the log up to `upto_lsn` (default: everything durable)."""
        upto = self.durable if upto_lsn is None else upto_lsn
        self.seed += 1_000_003     # a new process draws new message ids
        self.engine = self.recovered(upto)
        self.log = [r for r in self.log if r[0] <= upto]
        self.lsn = upto
        self.durable = upto
        self.deliveries.clear()
        self.engine.check_invariants()
