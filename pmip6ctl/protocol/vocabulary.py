"""The protocol's typed vocabulary: message kinds, RO modes and roles, and
the reasons attempts fail, bindings end and messages are refused.

Every enum here is a StrEnum whose values are the metric label values
(`pmip6_signaling_messages_total{type=, result=}`, `pmip6_ro_attempts_total
{mode=}`) and what the control socket's JSON carries. The sentence an
operator reads in the log and in `ro show` is each member's `.text`.
"""

from __future__ import annotations

import enum

from .. import wire


class MessageKind(enum.StrEnum):
    """A mobility message as this protocol names it: a PBU/PBA for proxy
    registration (RFC 5213), an RO BU/BA for the draft's binding between
    MAGs (docs/protocol.md §4), else RFC 6275's and RFC 6705's names."""
    PBU = "pbu"
    PBA = "pba"
    BU = "bu"
    BA = "ba"
    RO_BU = "ro_bu"
    RO_BA = "ro_ba"
    HOTI = "hoti"
    COTI = "coti"
    HOT = "hot"
    COT = "cot"
    BE = "be"
    HEARTBEAT = "heartbeat"
    LRI = "lri"
    LRA = "lra"
    BRR = "brr"
    BRI = "bri"
    BRA = "bra"
    EXPERIMENTAL = "experimental"
    OTHER = "other"


_KIND_OF_TYPE = {
    wire.HomeTestInit: MessageKind.HOTI, wire.CareofTestInit: MessageKind.COTI, wire.HomeTest: MessageKind.HOT,
    wire.CareofTest: MessageKind.COT, wire.BindingError: MessageKind.BE, wire.Heartbeat: MessageKind.HEARTBEAT,
    wire.LocalizedRoutingInitiation: MessageKind.LRI, wire.LocalizedRoutingAck: MessageKind.LRA,
    wire.BindingRefreshRequest: MessageKind.BRR, wire.ExperimentalMessage: MessageKind.EXPERIMENTAL,
}


_CORRESPONDENT = (wire.CNHomeNetworkPrefix, wire.CNIPv4HomeAddress)
_RO_ACK = (wire.ROAcknowledgement, wire.IPv4ROAcknowledgement)
_BU_P, _BA_P = int(wire.BUFlags.P), int(wire.BAFlags.P)     # plain ints: no enum arithmetic per message


def names_a_correspondent(bu: wire.BindingUpdate) -> bool:
    """An RO Binding Update: it names a CN (docs/protocol.md §4)."""
    return wire.find_option(bu, _CORRESPONDENT) is not None


def acknowledges_route_optimization(ba: wire.BindingAck) -> bool:
    """An RO Binding Acknowledgement: it carries an RO Acknowledgement option."""
    return wire.find_option(ba, _RO_ACK) is not None


def message_kind(msg: wire.Message) -> MessageKind:
    if isinstance(msg, wire.BindingUpdate):
        if names_a_correspondent(msg):
            return MessageKind.RO_BU
        return MessageKind.PBU if int(msg.flags) & _BU_P else MessageKind.BU
    if isinstance(msg, wire.BindingAck):
        if acknowledges_route_optimization(msg):
            return MessageKind.RO_BA
        return MessageKind.PBA if int(msg.flags) & _BA_P else MessageKind.BA
    if isinstance(msg, wire.BindingRevocation):
        return MessageKind.BRI if msg.is_indication else MessageKind.BRA
    return _KIND_OF_TYPE.get(type(msg), MessageKind.OTHER)


def status_label(status: int, codes: type[enum.IntEnum] = wire.Status) -> str:
    """A status code as a label: its RFC name in lower case, else status_<n>."""
    try:
        return codes(status).name.lower()
    except ValueError:
        return f"status_{status}"


def result_label(msg: wire.Message) -> str:
    """The outcome a message carries, for the signaling counters."""
    if isinstance(msg, wire.BindingError):
        return status_label(msg.status, wire.BindingErrorStatus)
    if isinstance(msg, wire.LocalizedRoutingAck):
        return status_label(msg.status, wire.LRAStatus)
    if isinstance(msg, wire.BindingAck):
        return status_label(msg.status)
    if isinstance(msg, wire.BindingRevocation) and not msg.is_indication:
        return status_label(msg.code, wire.RevocationStatus)
    return "ok"


class _Described(enum.StrEnum):
    """A StrEnum whose members carry the sentence for the log."""

    @property
    def text(self) -> str:
        return type(self)._TEXT.get(self, self.value.replace("_", " "))


class Mode(enum.StrEnum):
    RR = "rr"                             # return routability (draft §2.1)
    QUICK = "quick"                       # quick mode with a shared key (draft §2.2)


class Role(enum.StrEnum):
    INITIATOR = "initiator"               # MAG1, for its MN
    RESPONDER = "responder"               # MAG2 or the CN agent, for its CN


class FailReason(_Described):
    """Why an RO attempt at the initiator gave up (the flow stays on, or
    returns to, the LMA path until a retry)."""
    LIFETIME_EXPIRED = "lifetime_expired"
    NO_MAG_ADDRESS = "lra_without_mag_address"
    IPV4_CN_OUTSIDE = "ipv4_cn_outside_domain"
    LMA_REFUSED = "lma_refused"
    PEER_WITHOUT_IPV4_COA = "peer_without_ipv4_coa"
    NO_IPV4_PROXY_COA = "no_ipv4_proxy_coa"
    PEER_REFUSED = "peer_refused"
    NONCES_EXPIRED_AGAIN = "nonces_expired_again"
    ATTEMPT_LIMIT_PER_MN = "attempt_limit_per_mn"
    ATTEMPT_LIMIT = "attempt_limit"
    PUSHED_OUT = "pushed_out"
    BINDING_ERROR = "binding_error_from_peer"
    NO_ANSWER = "no_answer"
    RESERVED_PEER = "peer_is_no_ro_peer"
    PEER_DEAD = "peer_dead"
    LOCAL_ROUTING_OFF = "local_routing_off"
    CN_NOT_BOUND_HERE = "cn_not_bound_here"
    LOCAL_ROUTE_LIMIT = "local_route_limit"
    CN_LEFT = "cn_no_longer_here"


FailReason._TEXT = {
    FailReason.LIFETIME_EXPIRED: "lifetime expired",
    FailReason.NO_MAG_ADDRESS: "LRA without the serving MAG's address",
    FailReason.LOCAL_ROUTING_OFF: "the CN is attached here, and ro.local_routing is off: LMA path",
    FailReason.CN_NOT_BOUND_HERE: "the LMA names us as the CN's MAG, but the CN is not registered here (yet)",
    FailReason.LOCAL_ROUTE_LIMIT: "dataplane.max_ro_entries local routes held: LMA path",
    FailReason.CN_LEFT: "the LMA no longer names us as the CN's MAG: local routing ends",
    FailReason.IPV4_CN_OUTSIDE: "the IPv4 CN is outside the domain",
    FailReason.LMA_REFUSED: "the LMA refused RO",
    FailReason.PEER_WITHOUT_IPV4_COA: "over IPv4 transport, but the peer MAG has no IPv4 proxy CoA",
    FailReason.NO_IPV4_PROXY_COA: "RO for an IPv4 MN needs our IPv4 proxy CoA (fig. 3)",
    FailReason.PEER_REFUSED: "the peer refused the binding",
    FailReason.NONCES_EXPIRED_AGAIN: "the peer refused fresh nonces too: its home test is answered elsewhere",
    FailReason.ATTEMPT_LIMIT_PER_MN: "this MN holds ro.max_attempts_per_mn attempts, none in backoff: not started",
    FailReason.ATTEMPT_LIMIT: "ro.max_attempts attempts held, none in backoff: not started",
    FailReason.PUSHED_OUT: "an attempt in backoff forgotten to make room for a new one",
    FailReason.BINDING_ERROR: "binding error from the peer",
    FailReason.NO_ANSWER: "no answer",
    FailReason.RESERVED_PEER: "the peer would be our LMA, a peer LMA or ourselves",
    FailReason.PEER_DEAD: "the peer missed heartbeat.ro_missed heartbeats in a row (RFC 5847): LMA path",
}


class StopReason(_Described):
    """Why an RO binding ended without a failure."""
    STOPPED = "stopped"                           # by the operator
    MN_DETACHED = "mn_detached"                   # our MN left (initiator)
    CN_DETACHED = "cn_detached"                   # our CN left (responder)
    DEREGISTERED_BY_PEER = "deregistered_by_peer"
    BINDING_ERROR = "binding_error_from_peer"
    LIFETIME_EXPIRED = "lifetime_expired"
    PEER_DEAD = "peer_dead"                       # it missed its heartbeats (RFC 5847)


StopReason._TEXT = {
    StopReason.STOPPED: "stopped by the operator",
    StopReason.MN_DETACHED: "mn detached",
    StopReason.CN_DETACHED: "cn detached",
    StopReason.DEREGISTERED_BY_PEER: "deregistered by the peer",
    StopReason.BINDING_ERROR: "binding error from the peer",
    StopReason.LIFETIME_EXPIRED: "lifetime expired",
    StopReason.PEER_DEAD: "the peer missed heartbeat.ro_missed heartbeats in a row (RFC 5847)",
}


class RejectReason(_Described):
    """Why an RO responder, or an initiator's BA check, refused a message
    (nothing was installed)."""
    CN_NOT_SERVED = "cn_not_served_here"
    BAD_QUICK_MODE_AUTHENTICATOR = "bad_quick_mode_authenticator"
    NO_KEY_FOR_PEER = "no_key_for_peer"
    UNAUTHENTICATED = "unauthenticated_binding_update"
    EXPIRED_NONCE = "expired_nonce_index"
    BAD_AUTHORIZATION = "bad_binding_authorization_data"
    TIMESTAMP_MISMATCH = "timestamp_mismatch"
    REPLAYED = "replayed_binding_update"
    NOT_HOME_PATH = "not_from_the_lma_tunnel"
    COTI_IN_UDP = "careof_test_init_in_udp"
    RESERVED_CAREOF = "careof_is_no_ro_peer"
    NO_ROOM = "no_room"
    DENIED_BY_POLICY = "denied_by_policy"
    KEY_NOT_FOR_THIS_MN = "key_not_for_this_mn"
    UNMATCHED_BA = "ba_answers_no_outstanding_bu"
    UNAUTHENTICATED_BE = "unauthenticated_binding_error"


RejectReason._TEXT = {
    RejectReason.CN_NOT_SERVED: "the CN is not served here",
    RejectReason.BAD_QUICK_MODE_AUTHENTICATOR: "bad quick-mode authenticator",
    RejectReason.NO_KEY_FOR_PEER: "no quick-mode key for this peer",
    RejectReason.UNAUTHENTICATED: "unauthenticated binding update",
    RejectReason.EXPIRED_NONCE: "expired nonce index",
    RejectReason.BAD_AUTHORIZATION: "bad binding authorization data",
    RejectReason.TIMESTAMP_MISMATCH: "timestamp mismatch",
    RejectReason.REPLAYED: "replayed or reordered binding update",
    RejectReason.NOT_HOME_PATH: "a home-path message that did not come through our LMA's tunnel",
    RejectReason.COTI_IN_UDP: "a CoTI in UDP: its CoT would go to the UDP sender, not the address it tests",
    RejectReason.RESERVED_CAREOF: "the care-of address is our LMA, a peer LMA or ours: no RO peer",
    RejectReason.NO_ROOM: "the RO table or the tunnels are full",
    RejectReason.DENIED_BY_POLICY: "the RO policy denies this pair",
    RejectReason.KEY_NOT_FOR_THIS_MN: "the quick-mode key does not cover this MN's prefix",
    RejectReason.UNMATCHED_BA: "a BA that answers no BU outstanding (sequence, peer or Timestamp): old or forged",
    RejectReason.UNAUTHENTICATED_BE: "a Binding Error not signed with the pair's key: it ends nothing",
}


class QueryOutcome(_Described):
    """How the LMA answered an RO query (LRI) from a MAG."""
    ANSWERED = "answered"
    CN_NOT_ANCHORED = "cn_not_anchored"
    CN_BETWEEN_MAGS = "cn_between_mags"   # not answered: the MAG asks again once the CN is registered
    NOT_THE_SERVING_MAG = "not_the_serving_mag"
    DENIED_BY_POLICY = "denied_by_policy"
    MALFORMED = "malformed_query"
    LOCAL_ROUTING = "local_routing"        # both at the asking MAG: local routing granted (RFC 6705)
    LOCAL_ROUTING_DENIED = "local_routing_denied"   # both there, and lma.local_routing is off: status 128


class RelayOutcome(_Described):
    """How an inter-LMA query was settled (scenario 2, docs/protocol.md §8)."""
    ASKING_PEERS = "asking_peers"
    PENDING_LIMIT = "pending_limit"       # too many queries out to the peers: this one waits for its retry
    ANSWERED_BY_PEER = "answered_by_peer"
    ANSWERED_FROM_CACHE = "answered_from_cache"
    NO_PEER_ANCHORS_IT = "no_peer_anchors_it"
    PEERS_DID_NOT_ANSWER = "peers_did_not_answer"
    UNAUTHENTICATED_PEER_ANSWER = "unauthenticated_peer_answer"
    UNAUTHENTICATED_PEER_QUERY = "unauthenticated_peer_query"
    CACHE_INVALIDATED_BY_PEER = "cache_invalidated_by_peer"
    ANSWERED_PEER = "answered_peer"
    NOT_ANCHORED_HERE = "not_anchored_here"


QueryOutcome._TEXT = {}
RelayOutcome._TEXT = {}
