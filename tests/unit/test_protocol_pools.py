"""HNP and IPv4 home address pools: lowest free first, one item per owner."""

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest

from pmip6ctl.protocol.pools import AddressPool, PoolExhausted, PrefixPool


def test_prefixes_are_handed_out_lowest_first():
    pool = PrefixPool(IPv6Network("2001:db8:100::/62"))
    assert [pool.allocate(f"mn{i}") for i in range(4)] == list(IPv6Network("2001:db8:100::/62").subnets(new_prefix=64))
    assert len(pool) == pool.capacity == 4


def test_the_same_owner_gets_the_same_prefix_back():
    pool = PrefixPool(IPv6Network("2001:db8:100::/56"))
    first = pool.allocate("mn1")
    pool.allocate("mn2")
    assert pool.allocate("mn1") == first
    assert pool.owner_of(first) == "mn1"
    assert len(pool) == 2


def test_exhaustion_raises_and_a_release_makes_room_for_the_next_owner():
    pool = PrefixPool(IPv6Network("2001:db8:100::/63"))
    a, b = pool.allocate("mn1"), pool.allocate("mn2")
    with pytest.raises(PoolExhausted):
        pool.allocate("mn3")
    pool.release("mn1")
    assert pool.owner_of(a) is None
    assert pool.allocate("mn3") == a
    assert pool.owner_of(b) == "mn2"


def test_release_of_an_owner_holding_nothing_is_harmless():
    pool = PrefixPool(IPv6Network("2001:db8:100::/63"))
    pool.release("nobody")
    assert pool.allocate("mn1") == IPv6Network("2001:db8:100::/64")


def test_the_lowest_free_prefix_is_found_again_after_a_release_below_others():
    pool = PrefixPool(IPv6Network("2001:db8:100::/62"))
    for i in range(4):
        pool.allocate(f"mn{i}")
    pool.release("mn1")
    pool.release("mn3")
    assert pool.allocate("new1") == IPv6Network("2001:db8:100:1::/64")
    assert pool.allocate("new2") == IPv6Network("2001:db8:100:3::/64")


def test_reserve_restores_a_particular_prefix():
    pool = PrefixPool(IPv6Network("2001:db8:100::/56"))
    wanted = IPv6Network("2001:db8:100:7::/64")
    assert pool.reserve("mn1", wanted)
    assert pool.reserve("mn1", wanted)  # again: still the owner's
    assert pool.owner_of(wanted) == "mn1"
    assert pool.allocate("mn1") == wanted
    assert pool.allocate("mn2") == IPv6Network("2001:db8:100::/64")


@pytest.mark.parametrize("prefix, why", [
    ("2001:db8:100:7::/64", "held by mn1"),
    ("2001:db8:200::/64", "outside the pool"),
    ("2001:db8:100::/60", "not the pool's prefix length"),
])
def test_reserve_refuses(prefix, why):
    pool = PrefixPool(IPv6Network("2001:db8:100::/56"))
    pool.reserve("mn1", IPv6Network("2001:db8:100:7::/64"))
    assert not pool.reserve("mn2", IPv6Network(prefix)), why


def test_reserve_refuses_a_second_prefix_for_an_owner():
    pool = PrefixPool(IPv6Network("2001:db8:100::/56"))
    pool.allocate("mn1")
    assert not pool.reserve("mn1", IPv6Network("2001:db8:100:7::/64"))


def test_other_prefix_lengths():
    pool = PrefixPool(IPv6Network("2001:db8:100::/64"), prefix_length=80)
    assert pool.allocate("mn1") == IPv6Network("2001:db8:100::/80")
    assert pool.allocate("mn2") == IPv6Network("2001:db8:100:0:1::/80")
    assert pool.capacity == 1 << 16


@pytest.mark.parametrize("length", [48, 129])
def test_a_prefix_length_that_does_not_fit_the_pool_is_refused(length):
    with pytest.raises(ValueError):
        PrefixPool(IPv6Network("2001:db8:100::/56"), prefix_length=length)


def test_owner_of_something_that_is_not_a_pool_prefix_is_none():
    pool = PrefixPool(IPv6Network("2001:db8:100::/56"))
    assert pool.owner_of(IPv6Network("2001:db8:999::/64")) is None
    assert pool.owner_of(IPv4Address("192.0.2.1")) is None


def test_ipv4_addresses_skip_the_network_and_broadcast_addresses():
    pool = AddressPool(IPv4Network("192.0.2.128/30"))
    assert pool.capacity == 2
    assert [pool.allocate("mn1"), pool.allocate("mn2")] == [IPv4Address("192.0.2.129"), IPv4Address("192.0.2.130")]
    with pytest.raises(PoolExhausted):
        pool.allocate("mn3")
    assert not pool.reserve("mn3", IPv4Address("192.0.2.128"))
    assert not pool.reserve("mn3", IPv4Address("192.0.2.131"))


@pytest.mark.parametrize("network, addresses", [
    ("192.0.2.130/31", ["192.0.2.130", "192.0.2.131"]),  # RFC 3021: both usable
    ("192.0.2.130/32", ["192.0.2.130"]),
])
def test_ipv4_point_to_point_pools_use_every_address(network, addresses):
    pool = AddressPool(IPv4Network(network))
    assert [pool.allocate(f"mn{i}") for i in range(len(addresses))] == [IPv4Address(a) for a in addresses]
    with pytest.raises(PoolExhausted):
        pool.allocate("one more")


def test_ipv4_same_owner_release_reserve_and_owner_of():
    pool = AddressPool(IPv4Network("192.0.2.128/25"))
    first = pool.allocate("mn1")
    assert pool.allocate("mn1") == first
    assert pool.reserve("mn2", IPv4Address("192.0.2.200"))
    assert pool.owner_of(IPv4Address("192.0.2.200")) == "mn2"
    assert pool.owner_of(IPv4Address("198.51.100.1")) is None
    pool.release("mn1")
    assert pool.allocate("mn3") == first
