"""The XDP data plane: bcc loading, pinned maps, counters and events."""

from .loader import (
    Dataplane,
    DataplaneError,
    DataplaneSettings,
    FlowEvent,
    PuntEvent,
    decode_event,
    remove_pins,
)
from .tables import Counter, Encap, Peer, PeerKind, RoEntry, Tables, Tunnel

__all__ = [
    "Counter", "Dataplane", "DataplaneError", "DataplaneSettings", "Encap", "FlowEvent",
    "Peer", "PeerKind", "PuntEvent", "RoEntry", "Tables", "Tunnel", "decode_event", "remove_pins",
]
