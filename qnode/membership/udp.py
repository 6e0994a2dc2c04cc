"""Asyncio UDP shell around the SWIM core: one datagram socket and one timer task per node.

Owns: the socket, the clock and the subscriber list. It makes no protocol decisions (STYLE §2.1):
every datagram and every timer expiry is handed to `Swim`, then its effects are carried out in
the core's order: send the outbox, deliver events, re-arm the timer.

Transport: UDP datagrams, not the TCP protocol port. SWIM measures reachability with the probe
itself, so a lost datagram is the signal the detector is built around (it retries through
indirect probes rather than retransmitting); UDP needs no per-peer connection, so probing N
members costs no connection setup, no reconnect storm when a member dies, and no
head-of-line blocking behind a slow stream; and each message is one bounded datagram
(`packet_size_max`, 1400 bytes, below the Ethernet MTU). The price: a push-pull sync must fit
one datagram (`sync_packet_size_max`, 60 kB, fragmented by IP on a LAN); bigger tables are
synced a random subset at a time (memberlist uses TCP for push-pull; see docs/design/membership.md).
The UDP port is meant to be the same number as the node's binary TCP listener (`--listen`), so
`--seeds HOST:PORT` names both.

Invariants: the core is only called from the event loop thread; the timer task is owned by the
`Membership` object (kept in `_task`, with a done-callback that logs a crash) and cancelled by
`stop()`; subscribers are bounded (`subscribers_max`) and a failing subscriber is logged, never
allowed to break the loop.

Wiring into a node (for qnode/node.py):
    membership = await Membership.start(cfg.node_id, listen_host, listen_port,
                                        Meta.build(roles=cfg.roles, binary_address=cfg.listen,
                                                   http_address=cfg.http, cell=cfg.cell),
                                        seeds=cfg.seeds, config=SwimConfig.lan())
    unsubscribe = membership.subscribe(metadata_manager.on_member_event)   # sync callback
    ... membership.members(); membership.update_meta(meta.with_load({...}))
    on shutdown (after in-flight work, before closing sockets):
        await membership.leave(); await membership.stop()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from typing import Callable

from qnode.membership.config import SwimConfig
from qnode.membership.swim import Swim, SwimStats
from qnode.membership.types import Member, MemberEvent, Meta, join_address, split_address

log = logging.getLogger(__name__)

subscribers_max = 64
Subscriber = Callable[[MemberEvent], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.owner: Membership | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.owner is not None:
            self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a dead member and the like: the detector handles it.
        log.debug("udp error", extra={"error": repr(exc)})


RESOLVE_TIMEOUT_S = 5.0


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, family: int) -> str:
    """`host` as an IP address of `family` (itself if it is an IP address); OSError if it cannot
    be resolved in time."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, None, family=family, type=socket.SOCK_DGRAM)
    except TimeoutError:
        raise OSError(f"resolving {host!r} took over {RESOLVE_TIMEOUT_S} s") from None
    if not infos:
        raise OSError(f"{host!r} has no address")
    return str(infos[0][4][0])


async def _resolve_seed(loop: asyncio.AbstractEventLoop, seed: str, family: int) -> str | None:
    host, port = split_address(seed)
    try:
        return join_address(await _resolve(loop, host, family), port)
    except OSError as exc:
        log.warning("membership: seed %s not used: %s", seed, exc)
        return None


class Membership:
    """A running SWIM member. Build it with `await Membership.start(...)`."""

    def __init__(self, core: Swim, transport: asyncio.DatagramTransport,
                 clock_ns: Callable[[], int]) -> None:
        self._core = core
        self._transport = transport
        self._clock_ns = clock_ns
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._leave_waiter: asyncio.Future[None] | None = None
        self.send_errors = 0

    @classmethod
    async def start(cls, node_id: str, bind_host: str, bind_port: int, meta: Meta,
                    seeds: list[str] | tuple[str, ...] = (), config: SwimConfig | None = None, *,
                    advertise_host: str | None = None, rng: random.Random | None = None,
                    clock_ns: Callable[[], int] = time.monotonic_ns) -> "Membership":
        """Bind `bind_host:bind_port` (port 0 picks one), start probing, and join via `seeds`
        ("host:port" strings). Returns at once; `joined` turns True when a seed answered.

        `advertise_host` is the host others reach us at; it defaults to `bind_host`, which then
        must not be a wildcard address; host names are resolved once, here (a seed that does not
        resolve is skipped with a warning). Raises OSError if the port cannot be bound or our
        own host not resolved, and ValueError for a wildcard bind without `advertise_host`.
        """
        if advertise_host is None and bind_host in ("0.0.0.0", "::", ""):
            raise ValueError("binding a wildcard address needs advertise_host")
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Protocol, local_addr=(bind_host, bind_port))
        try:
            # Datagrams go to IP addresses of our socket's family (uvloop refuses host names):
            # resolve ours and the seeds' once, here.
            family = transport.get_extra_info("socket").family
            advertise_host = await _resolve(loop, advertise_host or bind_host, family)
            resolved = [await _resolve_seed(loop, seed, family) for seed in seeds]
        except BaseException:
            transport.close()
            raise
        seeds = [seed for seed in resolved if seed is not None]
        port = transport.get_extra_info("sockname")[1]
        address = join_address(advertise_host, port)
        core = Swim(node_id, address, meta, config or SwimConfig.lan(),
                    rng or random.Random(int.from_bytes(os.urandom(8), "big")))
        self = cls(core, transport, clock_ns)
        protocol.owner = self
        core.join(list(seeds))
        self._step()
        self._task = loop.create_task(self._run(), name=f"swim-{node_id}")
        self._task.add_done_callback(self._on_task_done)
        log.info("membership started", extra={"node": node_id, "address": address})
        return self

    # --- public API ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Our gossip address, "host:port" (the bound port when started with port 0)."""
        return self._core.address

    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def joined(self) -> bool:
        return self._core.joined

    @property
    def stats(self) -> SwimStats:
        return self._core.stats

    def members(self) -> list[Member]:
        """Every known member, ourselves included, sorted by node id."""
        return self._core.members()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every future membership event, on the event loop, in
        order. It must not block. Returns a function that unsubscribes it.
        Raises OverflowError beyond `subscribers_max` subscribers."""
        if len(self._subscribers) >= subscribers_max:
            raise OverflowError(f"at most {subscribers_max} membership subscribers")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    def update_meta(self, meta: Meta) -> None:
        """Advertise new metadata (for example load gauges); disseminated with an incarnation bump."""
        self._core.update_meta(meta)
        self._step()

    async def leave(self, timeout_s: float = 2.0) -> None:
        """Announce a graceful leave and wait until it has been gossiped (or `timeout_s`)."""
        if self._closed:
            return
        self._core.leave()
        self._step()
        if not self._core.leave_pending():
            return
        self._leave_waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._leave_waiter
        except TimeoutError:
            log.warning("leave not fully gossiped before the timeout", extra={"node": self.node_id})
        finally:
            self._leave_waiter = None

    async def stop(self) -> None:
        """Stop probing and close the socket (call `leave()` first for a graceful exit)."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})      # waits without re-raising the task's cancellation
        self._transport.close()
        log.info("membership stopped", extra={"node": self.node_id})

    # --- driving the core ------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple) -> None:
        if self._closed:
            return
        self._core.on_packet(join_address(addr[0], addr[1]), data, self._clock_ns())
        self._step()

    async def _run(self) -> None:
        while not self._closed:
            now = self._clock_ns()
            deadline = self._core.next_deadline_ns()
            if deadline <= now:
                self._core.tick(now)
                self._step()
                await asyncio.sleep(0)      # yield: datagrams queued meanwhile go first
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout((deadline - now) / 1e9):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _step(self) -> None:
        """Carry out the core's effects: send, then deliver events, then re-arm the timer."""
        for send in self._core.take_outbox():
            try:
                self._transport.sendto(send.packet, split_address(send.to_addr))
            except (OSError, ValueError) as exc:
                # OSError: e.g. an unreachable network. ValueError: uvloop refuses a host that
                # is not an IP address, and any peer can gossip one: it must not end this loop.
                self.send_errors += 1
                log.debug("udp send failed", extra={"to": send.to_addr, "error": repr(exc)})
        for event in self._core.take_events():
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:           # a subscriber bug must not stop failure detection
                    log.exception("membership subscriber failed", extra={"event": type(event).__name__})
        waiter = self._leave_waiter
        if waiter is not None and not waiter.done() and not self._core.leave_pending():
            waiter.set_result(None)
        self._wake.set()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("membership timer task crashed", exc_info=task.exception(),
                      extra={"node": self.node_id})
