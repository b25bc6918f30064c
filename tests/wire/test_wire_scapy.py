"""Cross-check the codec against scapy's independent Mobile IPv6 layers.

For every message scapy models (BRR, HoTI, CoTI, HoT, CoT, BU, BA, BE) and the
options it models (Pad1, PadN, Binding Refresh Advice, Alternate CoA, Nonce
Indices, Binding Authorization Data, MN-ID, Mobility Message Authentication;
its NEMO Mobile Network Prefix has HNP's layout and its Replay Protection has
the Timestamp's, so they stand in for options 22 and 27 with the type
overridden): our octets parse in scapy to the same values, and scapy's octets
decode in ours to the same values, its checksum included.
"""

from ipaddress import IPv6Address

import pytest

pytest.importorskip("scapy")

from scapy.layers.inet6 import (IPv6, MIP6MH_BA, MIP6MH_BE, MIP6MH_BRR, MIP6MH_BU, MIP6MH_CoT, MIP6MH_CoTI,  # noqa: E402
                                MIP6MH_HoT, MIP6MH_HoTI, MIP6OptAltCoA, MIP6OptBindingAuthData,
                                MIP6OptBRAdvice, MIP6OptMNID, MIP6OptMobNetPrefix, MIP6OptMsgAuth,
                                MIP6OptNonceIndices, MIP6OptReplayProtection, MIP6OptUnknown, Pad1, PadN,
                                in6_chksum)
from scapy.packet import Raw  # noqa: E402

from pmip6ctl import wire as w  # noqa: E402

SRC = IPv6Address("2001:db8:ff::1")
DST = IPv6Address("2001:db8:ff::2")
COOKIE = bytes(range(1, 9))
TOKEN = bytes(range(0xA1, 0xA9))
HOA = IPv6Address("2001:db8:1::10")


# --- Options: ours <-> scapy, field by field ----------------------------------

def option_to_scapy(option):
    """Build scapy's option from ours. scapy's defaults for Nonce Indices and Binding
    Authorization Data claim 16 octets, so their lengths are set here explicitly."""
    match option:
        case w.BindingRefreshAdvice():
            return MIP6OptBRAdvice(rinter=option.refresh_interval)
        case w.AlternateCareofAddress():
            return MIP6OptAltCoA(acoa=str(option.address))
        case w.NonceIndices():
            return MIP6OptNonceIndices(olen=4, hni=option.home_nonce_index, coni=option.careof_nonce_index)
        case w.BindingAuthorizationData():
            return MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(option.authenticator, "big"))
        case w.MobileNodeIdentifier():
            return MIP6OptMNID(subtype=option.subtype, id=option.identifier)
        case w.MobilityMessageAuthentication():
            return MIP6OptMsgAuth(subtype=option.subtype, mspi=option.spi, authdata=option.authenticator)
        case w.HomeNetworkPrefix():
            return MIP6OptMobNetPrefix(otype=22, plen=option.prefix_length, prefix=str(option.prefix))
        case w.Timestamp():
            return MIP6OptReplayProtection(otype=27, timestamp=option.timestamp)
    raise AssertionError(f"scapy does not model {option!r}")


def option_from_scapy(opt):
    """Read scapy's option into ours, by scapy's field names."""
    if isinstance(opt, MIP6OptUnknown) and opt.otype == 22:
        opt = MIP6OptMobNetPrefix(bytes(opt))
    if isinstance(opt, MIP6OptUnknown) and opt.otype == 27:
        opt = MIP6OptReplayProtection(bytes(opt))
    match opt:
        case MIP6OptBRAdvice():
            return w.BindingRefreshAdvice(opt.rinter)
        case MIP6OptAltCoA():
            return w.AlternateCareofAddress(IPv6Address(opt.acoa))
        case MIP6OptNonceIndices():
            return w.NonceIndices(opt.hni, opt.coni)
        case MIP6OptBindingAuthData():
            return w.BindingAuthorizationData(opt.authenticator.to_bytes(12, "big"))
        case MIP6OptMNID():
            return w.MobileNodeIdentifier(opt.id, opt.subtype)
        case MIP6OptMsgAuth():
            return w.MobilityMessageAuthentication(opt.subtype, opt.mspi, opt.authdata)
        case MIP6OptMobNetPrefix():
            assert opt.otype == 22
            return w.HomeNetworkPrefix(opt.plen, IPv6Address(opt.prefix))
        case MIP6OptReplayProtection():
            assert opt.otype == 27
            return w.Timestamp(opt.timestamp)
    raise AssertionError(f"unexpected scapy option {opt!r}")


def options_from_scapy(options):
    return [option_from_scapy(o) for o in options if not isinstance(o, (Pad1, PadN))]


OPTION_SETS = {
    "none": [],
    "rr": [w.NonceIndices(0x0102, 0x0304), w.AlternateCareofAddress(HOA), w.BindingRefreshAdvice(60),
           w.BindingAuthorizationData(bytes(range(12)))],
    "pmip": [w.MobileNodeIdentifier.from_nai("mn1@example.com"), w.HomeNetworkPrefix(64, IPv6Address("2001:db8:1::")),
             w.Timestamp.from_unix(1_700_000_000.5)],
    "quick": [w.HomeNetworkPrefix(128, HOA), w.Timestamp(0x0000_6553_F100_8000),
              w.MobilityMessageAuthentication(1, 0x0A0B0C0D, bytes(range(32)))],
}


# --- Messages: our class, scapy's class, and how their fields correspond --------

def bu_flags_for_scapy(flags):
    # scapy: 7 flag bits "PRMKLHA" (A high) then 9 reserved bits, where F and T live.
    return {"flags": int(flags) >> 9, "reserved": int(flags) & 0x1FF}


MESSAGES = [
    # (our message without options, scapy class, scapy fields)
    (w.BindingRefreshRequest(), MIP6MH_BRR, {}),
    (w.HomeTestInit(COOKIE), MIP6MH_HoTI, {"cookie": COOKIE}),
    (w.CareofTestInit(COOKIE), MIP6MH_CoTI, {"cookie": COOKIE}),
    (w.HomeTest(0x1234, COOKIE, TOKEN), MIP6MH_HoT, {"index": 0x1234, "cookie": COOKIE, "token": TOKEN}),
    (w.CareofTest(0x4321, COOKIE, TOKEN), MIP6MH_CoT, {"index": 0x4321, "cookie": COOKIE, "token": TOKEN}),
    (w.BindingUpdate(0xBEEF, w.BUFlags.A | w.BUFlags.H | w.BUFlags.P | w.BUFlags.T, 0x0102), MIP6MH_BU,
     {"seq": 0xBEEF, **bu_flags_for_scapy(0x8000 | 0x4000 | 0x0200 | 0x0080), "mhtime": 0x0102}),
    (w.BindingUpdate(1, w.BUFlags.K | w.BUFlags.L | w.BUFlags.M | w.BUFlags.R | w.BUFlags.F, 7), MIP6MH_BU,
     {"seq": 1, **bu_flags_for_scapy(0x1000 | 0x2000 | 0x0800 | 0x0400 | 0x0100), "mhtime": 7}),
    # scapy: 3 flag bits "PRK" (K high) then 5 reserved bits, where T lives.
    (w.BindingAck(w.Status.TIMESTAMP_MISMATCH, w.BAFlags.K | w.BAFlags.P | w.BAFlags.T, 0xBEEF, 0x0102), MIP6MH_BA,
     {"status": 156, "flags": 0b101, "res2": 0x10, "seq": 0xBEEF, "mhtime": 0x0102}),
    (w.BindingAck(0, w.BAFlags.R, 2, 3), MIP6MH_BA, {"status": 0, "flags": 0b010, "res2": 0, "seq": 2, "mhtime": 3}),
    (w.BindingError(w.BindingErrorStatus.UNRECOGNIZED_MH_TYPE, HOA), MIP6MH_BE, {"status": 2, "ha": str(HOA)}),
]

CASES = [pytest.param(msg, cls, fields, opts, id=f"{cls.__name__}-{name}")
         for msg, cls, fields in MESSAGES for name, opts in OPTION_SETS.items()]


def with_options(msg, options):
    msg = type(msg)(**{**msg.__dict__, "options": list(options)})
    return msg


@pytest.mark.parametrize("msg,scapy_cls,fields,options", CASES)
def test_our_octets_parse_in_scapy(msg, scapy_cls, fields, options):
    msg = with_options(msg, options)
    packet = IPv6(bytes(IPv6(src=str(SRC), dst=str(DST), nh=135) / Raw(w.encode(msg, SRC, DST))))
    mh = packet.payload
    assert isinstance(mh, scapy_cls)
    assert (mh.nh, mh.mhtype) == (59, msg.mh_type)
    for name, value in fields.items():
        got = mh.getfieldval(name)
        assert (int(got) if name == "flags" else got) == value, name
    assert options_from_scapy(mh.options) == options
    # scapy's own checksum over the pseudo-header agrees with the one we sent
    mh_octets = bytes(mh)
    assert in6_chksum(135, packet, mh_octets[:4] + b"\0\0" + mh_octets[6:]) == mh.cksum


@pytest.mark.parametrize("msg,scapy_cls,fields,options", CASES)
def test_scapy_octets_decode_in_ours(msg, scapy_cls, fields, options):
    built = IPv6(src=str(SRC), dst=str(DST)) / scapy_cls(**fields, options=[option_to_scapy(o) for o in options])
    mh = bytes(built)[40:]
    assert w.decode(mh, SRC, DST) == with_options(msg, options)  # also verifies scapy's checksum


def test_scapy_pad1_and_padn_are_skipped():
    built = IPv6(src=str(SRC), dst=str(DST)) / MIP6MH_BU(
        seq=1, flags="A", mhtime=1, autopad=0,
        options=[Pad1(), PadN(optdata=b"\0\0\0"), MIP6OptBRAdvice(rinter=5), PadN(optdata=b"")])
    mh = bytes(built)[40:]
    assert len(mh) % 8 == 0
    assert w.decode(mh, SRC, DST).options == [w.BindingRefreshAdvice(5)]
