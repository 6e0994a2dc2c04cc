"""Membership: SWIM gossip (probes, indirect probes, suspicion, incarnations, piggybacked
dissemination) publishing member up / suspect / down / left / updated events.

- `swim.Swim`: the sans-IO core; `udp.Membership`: the asyncio UDP shell; `codec`: wire format;
  `config.SwimConfig`: timers and bounds; `types`: `Meta`, `Member`, events. See
  docs/design/membership.md.
"""

from qnode.membership.config import SwimConfig
from qnode.membership.types import (
    Member, MemberDown, MemberEvent, MemberLeft, MemberSuspect, MemberUp, MemberUpdated, Meta,
    State,
)

__all__ = [
    "Member", "MemberDown", "MemberEvent", "MemberLeft", "MemberSuspect", "MemberUp",
    "MemberUpdated", "Meta", "State", "SwimConfig",
]
