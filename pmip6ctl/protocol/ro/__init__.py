"""Route optimization for PMIPv6 (draft-jeong-netlmm-ro-support-for-pmip6-00),
sans-I/O: the initiator at MAG1 (initiator.py), the responder at MAG2 and in
the CN agent (responder.py), and what they return (actions.py)."""

from .actions import (Address, LocalRouteInstalled, LocalRouteRemoved, RoFailed, RoInstalled, RoPair, RoRejected, RoRemoved, RoSendOnlyOnceHeard, mapped,
                      no_binding_error, unmapped)
from .initiator import (Attempt, Binding, Event, IllegalTransition, InitiatorPolicy, Peer, Phase, RoInitiator,
                        SavedAttempt, Tokens)
from .responder import ResponderBinding, ResponderPolicy, RoResponder, SavedReplay, SavedResponder

__all__ = [
    "Address", "Attempt", "LocalRouteInstalled", "LocalRouteRemoved", "Binding", "Event", "IllegalTransition", "InitiatorPolicy", "Peer", "Phase",
    "ResponderBinding", "ResponderPolicy", "RoFailed", "RoInitiator", "RoInstalled", "RoPair", "RoRejected",
    "RoRemoved", "RoResponder", "RoSendOnlyOnceHeard", "SavedAttempt", "SavedReplay", "SavedResponder", "Tokens", "mapped", "no_binding_error", "unmapped",
]
