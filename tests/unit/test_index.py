"""PrefixIndex: longest-prefix match of an address onto the prefixes a node
holds, checked against a plain scan."""

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from hypothesis import given, strategies as st

from pmip6ctl.protocol.index import PrefixIndex


def test_the_longest_prefix_holding_the_address_wins():
    index = PrefixIndex()
    index.add(IPv6Network("2001:db8::/32"), "wide")
    index.add(IPv6Network("2001:db8:100::/64"), "hnp")
    index.add(IPv4Address("192.0.2.129"), "hoa")
    assert index.lookup(IPv6Address("2001:db8:100::10")) == "hnp"
    assert index.lookup(IPv6Address("2001:db8:200::10")) == "wide"
    assert index.lookup(IPv6Address("2001:db9::1")) is None
    assert index.lookup(IPv4Address("192.0.2.129")) == "hoa"
    assert index.lookup(IPv4Address("192.0.2.130")) is None
    assert len(index) == 3


def test_families_never_mix():
    index = PrefixIndex()
    index.add(IPv6Network("::/0"), "all ipv6")
    assert index.lookup(IPv4Address("192.0.2.1")) is None


def test_remove_only_what_still_belongs_to_the_owner():
    index = PrefixIndex()
    index.add(IPv6Network("2001:db8:100::/64"), "mn1")
    index.add(IPv6Network("2001:db8:100::/64"), "mn2")          # handed on
    index.remove(IPv6Network("2001:db8:100::/64"), "mn1")       # mn1's late removal changes nothing
    assert index.lookup(IPv6Address("2001:db8:100::1")) == "mn2"
    index.remove(IPv6Network("2001:db8:100::/64"))
    assert index.lookup(IPv6Address("2001:db8:100::1")) is None and len(index) == 0


prefixes = st.builds(lambda n, length: IPv6Network((n >> (128 - length) << (128 - length), length)),
                     st.integers(0, 2**128 - 1).map(lambda n: (0x20010DB8 << 96) | (n & (2**96 - 1))),
                     st.sampled_from([48, 56, 64, 128]))


@given(st.lists(prefixes, max_size=30), st.lists(st.integers(0, 2**96 - 1), max_size=20))
def test_lookup_agrees_with_a_scan(held, probes):
    index = PrefixIndex()
    for i, prefix in enumerate(held):
        index.add(prefix, i)
    inside = [p.network_address + 1 if p.prefixlen < 128 else p.network_address for p in held]
    for address in inside + [IPv6Address((0x20010DB8 << 96) | probe) for probe in probes]:
        holding = [(p.prefixlen, i) for i, p in enumerate(held) if address in p]
        # the longest prefix; of equal prefixes the one added last holds it
        assert index.lookup(address) == (max(holding)[1] if holding else None)
