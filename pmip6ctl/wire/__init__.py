"""The Mobility Header wire codec (RFC 6275 §6 and its PMIPv6 extensions).

Sans-I/O: ``encode`` turns a message dataclass into octets, ``decode`` turns
octets into one, raising WireError (and nothing else) for malformed input.
docs/protocol.md lists every message pmip6ctl sends.
"""

from .checksum import internet_checksum, mh_checksum
from .errors import ChecksumError, UnknownMessageType, WireError
from .messages import (
    IPPROTO_NONE,
    MESSAGE_TYPES,
    AccessTechnologyTypeValue,
    BAFlags,
    BindingAck,
    BindingError,
    BindingErrorStatus,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    ExperimentalMessage,
    HandoffIndicatorValue,
    Heartbeat,
    HomeTest,
    HomeTestInit,
    LocalizedRoutingAck,
    LocalizedRoutingInitiation,
    LRAStatus,
    Message,
    Status,
    auth_data,
    decode,
    encode,
)
from .options import (
    EXPERIMENTAL_SUBTYPES,
    OPTION_TYPES,
    AccessTechnologyType,
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    CNAddress,
    CNHomeNetworkPrefix,
    CNIPv4Address,
    CNIPv4HomeAddress,
    ExperimentalOption,
    HandoffIndicator,
    HomeNetworkPrefix,
    IPv4AddressAck,
    IPv4CareofAddress,
    IPv4HomeAddress,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    IPv4ROAcknowledgement,
    LinkLocalAddress,
    MAGIPv6Address,
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    NATDetection,
    NonceIndices,
    Option,
    ROAcknowledgement,
    Timestamp,
    UnknownOption,
    find_option,
    find_options,
)

__all__ = [name for name in dir() if not name.startswith("_") and name not in
           ("checksum", "errors", "messages", "options")]
