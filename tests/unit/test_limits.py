"""The per-prefix rate limit on answers to strangers (protocol/limits.py)."""

from ipaddress import IPv4Address, IPv6Address

from pmip6ctl.protocol.limits import PrefixRateLimiter


def test_a_prefix_gets_its_burst_then_its_rate():
    limiter = PrefixRateLimiter(rate=10, burst=5)
    a = IPv6Address("2001:db8:1::1")
    assert [limiter.allow(a, 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert [limiter.allow(a, 0.3) for _ in range(4)] == [True] * 3 + [False]      # 0.3 s: 3 more
    assert limiter.allow(IPv6Address("2001:db8:1::ffff"), 0.3) is False           # same /64
    assert limiter.allow(IPv6Address("2001:db8:2::1"), 0.3) is True                # another one
    assert limiter.allow(IPv4Address("192.0.2.1"), 0.3) is True
    assert limiter.refused == 4


def test_the_table_of_prefixes_is_bounded_and_forgets_the_least_recently_seen():
    limiter = PrefixRateLimiter(rate=1, burst=1, max_prefixes=3)
    addresses = [IPv6Address(f"2001:db8:{n}::1") for n in range(4)]
    for address in addresses[:3]:
        assert limiter.allow(address, 0.0)
    assert limiter.allow(addresses[0], 0.0) is False       # spent, and now the most recent
    assert limiter.allow(addresses[3], 0.0)                 # pushes out addresses[1]
    assert len(limiter) == 3
    assert limiter.allow(addresses[1], 0.0)                 # forgotten: a fresh budget
    assert limiter.allow(addresses[0], 0.0) is False
