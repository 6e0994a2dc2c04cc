"""Start and stop real `qnode start` processes for integration and chaos tests.

A `NodeProcess` runs `python -m qnode.cli start` on ephemeral ports with its own data directory,
waits for the first `listening binary=... http=...` line (never a sleep), and stops by PID only:
SIGTERM for a graceful stop, SIGKILL for a crash. Its stderr is drained by a thread into a bounded
buffer so the child can never block on a full pipe, and is shown when a test fails.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

LISTENING = re.compile(r"listening binary=(\S+) http=(\S+)")
LOG_LINES_MAX = 2_000


class NodeProcess:
    def __init__(self, data_dir: Path, *extra_args: str, http: bool = False,
                 listen: str = "127.0.0.1:0", env: dict[str, str] | None = None) -> None:
        self.listen = listen
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.http = http
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.binary: str | None = None
        self.http_address: str | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES_MAX)
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> "NodeProcess":
        args = [sys.executable, "-m", "qnode.cli", "start", "--listen", self.listen,
                "--http", "127.0.0.1:0" if self.http else "off",
                "--data-dir", str(self.data_dir), *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        self._listening.clear()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self._reader = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._listening.wait(timeout_s):
            code = self.proc.poll()
            self.kill()
            raise RuntimeError(f"node did not start within {timeout_s}s (exit={code}):\n"
                               + "\n".join(self.log))
        return self

    def _drain(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip())
            m = LISTENING.search(line)
            if m and not self._listening.is_set():
                self.binary, http = m.group(1), m.group(2)
                self.http_address = None if http == "off" else http
                self._listening.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def wait_for_log(self, pattern: str, timeout_s: float = 10.0) -> str:
        """Return the first log line matching `pattern`, polling until a deadline."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.log):
                if rx.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + "\n".join(self.log))

    def cli(self, *args: str, input: bytes | None = None, timeout_s: float = 60.0
            ) -> subprocess.CompletedProcess:
        """Run the `qnode` CLI against this node."""
        assert self.binary is not None
        return subprocess.run([sys.executable, "-m", "qnode.cli", "--address", self.binary, *args],
                              input=input, capture_output=True, timeout=timeout_s)
