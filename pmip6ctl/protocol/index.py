"""Longest-prefix match of an address onto the prefixes a node holds: the
MNs' home network prefixes and IPv4 home addresses (as /32).

One dict per (IP version, prefix length): a lookup costs one dict probe
per distinct prefix length, whatever the number of prefixes (an operator
hands out HNPs of one or two lengths), instead of a scan of every binding.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Generic, TypeVar

Value = TypeVar("Value")
Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


class PrefixIndex(Generic[Value]):
    def __init__(self):
        self._tables: dict[tuple[int, int], dict[int, Value]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}      # longest first

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def add(self, prefix: Network | Address | str, value: Value) -> None:
        net = _network(prefix)
        key = (net.version, net.prefixlen)
        if key not in self._tables:
            self._tables[key] = {}
            lengths = self._lengths[net.version]
            lengths.append(net.prefixlen)
            lengths.sort(reverse=True)
        self._tables[key][int(net.network_address)] = value

    def remove(self, prefix: Network | Address | str, value: Value | None = None) -> None:
        """Forget the prefix (only while it still maps to value, when given)."""
        net = _network(prefix)
        table = self._tables.get((net.version, net.prefixlen))
        if table is None:
            return
        start = int(net.network_address)
        if value is not None and table.get(start) != value:
            return
        table.pop(start, None)
        if not table:
            del self._tables[(net.version, net.prefixlen)]
            self._lengths[net.version].remove(net.prefixlen)

    def lookup(self, address: Address) -> Value | None:
        """The value of the longest prefix holding address, or None."""
        bits = address.max_prefixlen
        number = int(address)
        for length in self._lengths[address.version]:
            shift = bits - length
            found = self._tables[(address.version, length)].get(number >> shift << shift)
            if found is not None:
                return found
        return None


def _network(prefix: Network | Address | str) -> Network:
    if isinstance(prefix, (IPv4Address, IPv6Address)):
        return ip_network(prefix)
    return ip_network(prefix, strict=False) if isinstance(prefix, str) else prefix
