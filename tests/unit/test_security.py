"""Return routability crypto (RFC 6275 §5.2.5, §6.2.7) and quick mode (RFC 4285 with HMAC-SHA256).

Expected values are computed here from the RFC formulas with hashlib/hmac,
never by calling the code under test.
"""

import hashlib
import hmac
from ipaddress import IPv6Address

import pytest

from pmip6ctl import security
from pmip6ctl.security import (MAX_NONCE_LIFETIME, MAX_RR_BINDING_LIFETIME, MAX_TOKEN_LIFETIME, NonceTable,
                               binding_authenticator, binding_management_key, careof_keygen_token,
                               home_keygen_token, mma_authenticator, new_kcn, sign_binding_update, sign_mma,
                               verify_binding_authorization, verify_mma)
from pmip6ctl.wire import (BindingAck, BindingAuthorizationData, BindingUpdate, BAFlags, BUFlags,
                           HomeNetworkPrefix, MobilityMessageAuthentication, NonceIndices, Timestamp, decode,
                           encode)
from pmip6ctl.wire.options import CNHomeNetworkPrefix

KCN = bytes(range(20))
NONCE = bytes(range(100, 108))
MN_HOA = IPv6Address("2001:db8:1::10")
CN_HOA = IPv6Address("2001:db8:2::20")
MAG1 = IPv6Address("2001:db8:ff::1")
MAG2 = IPv6Address("2001:db8:ff::2")


def first(bits, data):
    return data[:bits // 8]


def ro_binding_update(*extra, nonce_indices=NonceIndices(3, 4)):
    """A route optimization BU as docs/protocol.md draws it (before signing)."""
    return BindingUpdate(7, BUFlags.A | BUFlags.P, 105, [
        HomeNetworkPrefix(128, MN_HOA), CNHomeNetworkPrefix(128, CN_HOA),
        Timestamp.from_unix(1_700_000_000), nonce_indices, *extra])


# --- Keygen tokens and Kbm ----------------------------------------------------

def test_constants_from_rfc_6275_section_12():
    assert (MAX_NONCE_LIFETIME, MAX_TOKEN_LIFETIME, MAX_RR_BINDING_LIFETIME) == (240, 210, 420)


def test_new_kcn_is_20_random_octets():
    assert len(new_kcn()) == 20
    assert new_kcn() != new_kcn()


def test_home_keygen_token():
    expected = first(64, hmac.new(KCN, MN_HOA.packed + NONCE + b"\x00", hashlib.sha1).digest())
    assert home_keygen_token(KCN, MN_HOA, NONCE) == expected


def test_careof_keygen_token():
    expected = first(64, hmac.new(KCN, MAG1.packed + NONCE + b"\x01", hashlib.sha1).digest())
    assert careof_keygen_token(KCN, MAG1, NONCE) == expected


def test_home_and_careof_tokens_differ_for_the_same_address():
    assert home_keygen_token(KCN, MAG1, NONCE) != careof_keygen_token(KCN, MAG1, NONCE)


def test_binding_management_key():
    home, careof = b"H" * 8, b"C" * 8
    assert binding_management_key(home, careof) == hashlib.sha1(home + careof).digest()


def test_binding_management_key_for_deregistration_uses_the_home_token_alone():
    assert binding_management_key(b"H" * 8) == hashlib.sha1(b"H" * 8).digest()


def test_binding_authenticator():
    kbm, mh_data = b"K" * 20, b"mobility header data"
    expected = first(96, hmac.new(kbm, MAG1.packed + MAG2.packed + mh_data, hashlib.sha1).digest())
    assert binding_authenticator(kbm, MAG1, MAG2, mh_data) == expected


# --- Binding Authorization Data ---------------------------------------------

KBM = hashlib.sha1(b"H" * 8 + b"C" * 8).digest()


def test_signed_bu_carries_the_rfc_authenticator_over_its_own_octets():
    signed = sign_binding_update(ro_binding_update(), KBM, MAG1, MAG2)
    assert isinstance(signed.options[-1], BindingAuthorizationData)
    mh = encode(signed, MAG1, MAG2)
    # RFC 6275 §6.2.7: Mobility Data = care-of address | correspondent | MH Data,
    # MH Data = the header with Checksum 0 and without the Authenticator (the option is last).
    mh_data = mh[:4] + b"\0\0" + mh[6:-12]
    expected = first(96, hmac.new(KBM, MAG1.packed + MAG2.packed + mh_data, hashlib.sha1).digest())
    assert mh[-12:] == expected


def test_sign_then_verify_after_the_wire():
    mh = encode(sign_binding_update(ro_binding_update(), KBM, MAG1, MAG2), MAG1, MAG2)
    assert verify_binding_authorization(decode(mh, MAG1, MAG2), KBM, MAG1, MAG2)


def test_signing_leaves_the_original_alone_and_replaces_an_old_authenticator():
    msg = ro_binding_update(BindingAuthorizationData(bytes(12)))
    signed = sign_binding_update(msg, KBM, MAG1, MAG2)
    assert msg.options[-1] == BindingAuthorizationData(bytes(12))
    assert [type(o) for o in signed.options].count(BindingAuthorizationData) == 1
    assert verify_binding_authorization(signed, KBM, MAG1, MAG2)


def test_binding_ack_from_the_correspondent_is_signed_the_same_way():
    ack = sign_binding_update(BindingAck(0, BAFlags(0), 7, 105), KBM, MAG1, MAG2)
    assert verify_binding_authorization(decode(encode(ack)), KBM, MAG1, MAG2)


@pytest.mark.parametrize("octet", [6, 7, 9, 11, 20, 40, -1])
def test_tampered_bu_fails(octet):
    mh = bytearray(encode(sign_binding_update(ro_binding_update(), KBM, MAG1, MAG2)))
    mh[octet] ^= 0x01
    assert not verify_binding_authorization(decode(bytes(mh)), KBM, MAG1, MAG2)


def test_wrong_key_or_addresses_fail():
    msg = decode(encode(sign_binding_update(ro_binding_update(), KBM, MAG1, MAG2)))
    assert not verify_binding_authorization(msg, hashlib.sha1(b"other").digest(), MAG1, MAG2)
    assert not verify_binding_authorization(msg, KBM, MAG2, MAG1)


def test_unsigned_or_misplaced_authenticator_fails():
    assert not verify_binding_authorization(ro_binding_update(), KBM, MAG1, MAG2)
    signed = sign_binding_update(ro_binding_update(), KBM, MAG1, MAG2)
    signed.options.append(signed.options.pop(0))  # the BAD is no longer last
    assert not verify_binding_authorization(signed, KBM, MAG1, MAG2)


def test_full_return_routability_exchange():
    """MAG2 answers HoTI/CoTI from its nonce table; MAG1 signs the BU with the tokens;
    MAG2 recomputes Kbm from the Nonce Indices in the BU and accepts it."""
    nonces = NonceTable(rotation=30)
    home_index, home_nonce = nonces.current(now=0)        # HoT
    careof_index, careof_nonce = nonces.current(now=31)   # CoT, after a rotation
    assert home_index != careof_index
    # MAG1: tokens from HoT and CoT.
    kbm = binding_management_key(home_keygen_token(KCN, MN_HOA, home_nonce),
                                 careof_keygen_token(KCN, MAG1, careof_nonce))
    bu = sign_binding_update(ro_binding_update(nonce_indices=NonceIndices(home_index, careof_index)),
                             kbm, MAG1, MAG2)
    # MAG2: everything from the BU and its own state.
    received = decode(encode(bu, MAG1, MAG2), MAG1, MAG2)
    indices = received.options[3]
    home_token = home_keygen_token(KCN, received.options[0].prefix, nonces.lookup(indices.home_nonce_index, 40))
    careof_token = careof_keygen_token(KCN, MAG1, nonces.lookup(indices.careof_nonce_index, 40))
    assert verify_binding_authorization(received, binding_management_key(home_token, careof_token), MAG1, MAG2)


# --- NonceTable ---------------------------------------------------------------

def counting_random():
    counter = iter(range(1, 1_000_000))
    return lambda n: next(counter).to_bytes(n, "big")


def test_nonce_is_stable_within_a_rotation_period():
    table = NonceTable(rotation=30)
    assert table.current(100) == table.current(129.9)


def test_nonce_rotates_with_a_new_index():
    table = NonceTable(rotation=30, random=counting_random())
    index1, nonce1 = table.current(100)
    index2, nonce2 = table.current(130)
    assert index2 == (index1 + 1) & 0xFFFF
    assert nonce2 != nonce1
    assert len(nonce1) == len(nonce2) == 8


def test_previous_nonces_stay_valid_until_max_nonce_lifetime():
    table = NonceTable(rotation=30)
    index, nonce = table.current(100)
    table.current(130)
    table.current(200)
    assert table.lookup(index, 100 + MAX_NONCE_LIFETIME) == nonce
    assert table.lookup(index, 100 + MAX_NONCE_LIFETIME + 0.001) is None


def test_expired_nonces_are_forgotten():
    table = NonceTable(rotation=30)
    index, _ = table.current(0)
    table.current(1000)  # rotation prunes the table
    assert table.lookup(index, 1000) is None
    assert index not in table._nonces


def test_unknown_index_is_none():
    table = NonceTable()
    index, _ = table.current(0)
    assert table.lookup((index + 7) & 0xFFFF, 1) is None


def test_index_wraps_at_16_bits():
    table = NonceTable(rotation=1, random=lambda n: b"\xff" * n)  # first index 0xffff
    assert table.current(0)[0] == 0xFFFF
    assert table.current(1)[0] == 0


# --- Quick mode: Mobility Message Authentication (RFC 4285 §5, HMAC-SHA256) ---

KEYS = {0x100: b"peer key one".ljust(32, b"."), 0x200: b"peer key two".ljust(32, b".")}


def test_mma_authenticator_is_full_hmac_sha256():
    assert mma_authenticator(b"k", b"data") == hmac.new(b"k", b"data", hashlib.sha256).digest()


def test_signed_mma_covers_src_dst_and_the_header_up_to_the_spi():
    signed = sign_mma(ro_binding_update(), 0x100, KEYS[0x100], MAG1, MAG2)
    option = signed.options[-1]
    assert (option.type, option.subtype, option.spi, len(option.authenticator)) == (9, 255, 0x100, 32)
    mh = encode(signed, MAG1, MAG2)
    mh_data = (mh[:4] + b"\0\0" + mh[6:])[:-32]
    assert mh_data.endswith((0x100).to_bytes(4, "big"))
    expected = hmac.new(KEYS[0x100], MAG1.packed + MAG2.packed + mh_data, hashlib.sha256).digest()
    assert mh[-32:] == expected


def test_mma_sign_then_verify_after_the_wire():
    mh = encode(sign_mma(ro_binding_update(), 0x100, KEYS[0x100], MAG1, MAG2), MAG1, MAG2)
    assert verify_mma(decode(mh, MAG1, MAG2), KEYS, MAG1, MAG2)


def test_mma_with_the_wrong_key_fails():
    signed = sign_mma(ro_binding_update(), 0x100, b"not the configured key", MAG1, MAG2)
    assert not verify_mma(decode(encode(signed)), KEYS, MAG1, MAG2)


def test_mma_with_an_unknown_spi_fails():
    signed = sign_mma(ro_binding_update(), 0x300, KEYS[0x100], MAG1, MAG2)
    assert not verify_mma(decode(encode(signed)), KEYS, MAG1, MAG2)


def test_mma_with_another_spi_s_key_fails():
    signed = sign_mma(ro_binding_update(), 0x200, KEYS[0x100], MAG1, MAG2)
    assert not verify_mma(decode(encode(signed)), KEYS, MAG1, MAG2)


def test_mma_checked_for_other_addresses_fails():
    signed = sign_mma(ro_binding_update(), 0x100, KEYS[0x100], MAG1, MAG2)
    assert not verify_mma(decode(encode(signed)), KEYS, MAG2, MAG1)


def test_tampered_mma_message_fails():
    mh = bytearray(encode(sign_mma(ro_binding_update(), 0x100, KEYS[0x100], MAG1, MAG2)))
    mh[8] ^= 0x80  # a flag bit
    assert not verify_mma(decode(bytes(mh)), KEYS, MAG1, MAG2)


def test_mma_without_the_option_or_other_subtype_fails():
    assert not verify_mma(ro_binding_update(), KEYS, MAG1, MAG2)
    msg = ro_binding_update(MobilityMessageAuthentication(2, 0x100, bytes(32)))
    assert not verify_mma(msg, KEYS, MAG1, MAG2)


def test_our_hmac_sha256_never_poses_as_an_rfc_4285_subtype():
    # 1 (MN-HA) and 2 (MN-AAA) mean HMAC-SHA1-96 to an RFC 4285 receiver
    assert security.MMA_SUBTYPE not in (1, 2) and security.MMA_AUTHENTICATOR_SIZE == 32
    assert sign_mma(ro_binding_update(), 0x100, b"k" * 16, MAG1, MAG2).options[-1].subtype == 255
