"""Node configuration: one frozen dataclass, loaded with a fixed precedence.

Precedence, lowest first: defaults, then the TOML file (`--config`), then `QNODE_<NAME>`
environment variables, then command-line flags. `load_config()` applies them in that order and
`NodeConfig.validate()` returns every problem at once (etcd's Config.validate()), so an operator
fixes a bad config in one round. Components get their own sections, built in `qnode/node.py`;
no module reads a global config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ROLES = ("frontend", "metadata", "backend")
DEFAULT_LISTEN = "127.0.0.1:7700"
DEFAULT_HTTP = "127.0.0.1:9324"


class ConfigError(ValueError):
    """The configuration is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port). Raises ValueError with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {text!r} has an invalid port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class NodeConfig:
    roles: tuple[str, ...] = ROLES
    node_id: str = "n1"
    listen: str = DEFAULT_LISTEN            # binary protocol; nodes talk to each other on it too
    http: str = DEFAULT_HTTP                # SQS API, dashboard, /metrics; "off" disables it
    data_dir: str = "./qnode-data"
    seeds: tuple[str, ...] = ()
    cell: str = "default"
    bootstrap_expect: int = 0               # metadata nodes wait for N members before forming Raft
    insecure_no_auth: bool = False          # allow non-loopback listeners without authentication
    account_id: str = "000000000000"        # SQS account id in queue URLs and ARNs
    region: str = "us-east-1"
    access_keys: Mapping[str, str] = field(default_factory=dict)   # SigV4 access key -> secret
    log_level: str = "INFO"
    shutdown_timeout_ms: int = 5_000        # time in-flight requests get to finish on SIGTERM

    def validate(self) -> list[str]:
        problems: list[str] = []
        for role in self.roles:
            if role not in ROLES:
                problems.append(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        if not self.roles:
            problems.append("at least one role is needed")
        for name, value in (("listen", self.listen), ("http", self.http)):
            if name == "http" and value == "off":
                continue
            try:
                parse_address(value)
            except ValueError as exc:
                problems.append(f"--{name}: {exc}")
        for seed in self.seeds:
            try:
                parse_address(seed)
            except ValueError as exc:
                problems.append(f"--seeds: {exc}")
        if not self.node_id or len(self.node_id) > 64:
            problems.append("--node-id must be 1..64 characters")
        if self.bootstrap_expect < 0:
            problems.append("--bootstrap-expect must be >= 0")
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            problems.append("--account-id must be 12 digits")
        if self.shutdown_timeout_ms <= 0:
            problems.append("shutdown_timeout_ms must be > 0")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"unknown log level {self.log_level!r}")
        return problems

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML/env/flag value into the field's type."""
    if name in ("roles", "seeds"):
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return tuple(value)
    if name in ("bootstrap_expect", "shutdown_timeout_ms"):
        return int(value)
    if name == "insecure_no_auth":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if name == "access_keys":
        if isinstance(value, str):   # "KEY:SECRET,KEY2:SECRET2"
            pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
            return {k.strip(): s.strip() for k, s in pairs}
        return dict(value)
    return str(value)


def _normalise(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        name = key.replace("-", "_").lower()
        if name not in _FIELDS:
            problems.append(f"{source}: unknown setting {key!r}")
            continue
        try:
            out[name] = _coerce(name, value)
        except (TypeError, ValueError) as exc:
            problems.append(f"{source}: bad value for {key!r}: {exc}")
    if problems:
        raise ConfigError(problems)
    return out


def load_config(flags: Mapping[str, Any] | None = None, *, config_file: str | None = None,
                environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Defaults < TOML file < QNODE_* environment < flags (None values in flags are ignored)."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    path = config_file or environ.get("QNODE_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                merged.update(_normalise(tomllib.load(f), path))
        except OSError as exc:
            raise ConfigError([f"cannot read config file {path}: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"config file {path}: {exc}"]) from None
    env = {k[len("QNODE_"):]: v for k, v in environ.items()
           if k.startswith("QNODE_") and k != "QNODE_CONFIG"}
    env = {k: v for k, v in env.items() if k.replace("-", "_").lower() in _FIELDS}
    merged.update(_normalise(env, "environment"))
    merged.update(_normalise({k: v for k, v in (flags or {}).items() if v is not None}, "flags"))
    config = NodeConfig(**merged)
    problems = config.validate()
    if problems:
        raise ConfigError(problems)
    return config
