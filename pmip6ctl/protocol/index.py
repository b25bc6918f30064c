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
        version, length, start = _key(prefix)
        table = self._tables.get((version, length))
        if table is None:
            table = self._tables[(version, length)] = {}
            lengths = self._lengths[version]
            lengths.append(length)
            lengths.sort(reverse=True)
        table[start] = value

    def remove(self, prefix: Network | Address | str, value: Value | None = None) -> None:
        """Forget the prefix (only while it still maps to value, when given)."""
        version, length, start = _key(prefix)
        table = self._tables.get((version, length))
        if table is None:
            return
        if value is not None and table.get(start) != value:
            return
        table.pop(start, None)
        if not table:
            del self._tables[(version, length)]
            self._lengths[version].remove(length)

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


def _key(prefix: Network | Address | str) -> tuple[int, int, int]:
    """(IP version, prefix length, first address as an int): an address is
    its own /32 or /128. No network object is built (issue 14: ipaddress
    parses an address given to a network constructor back from its text)."""
    if isinstance(prefix, (IPv4Address, IPv6Address)):
        return prefix.version, prefix.max_prefixlen, int(prefix)
    if isinstance(prefix, str):
        prefix = ip_network(prefix, strict=False)
    return prefix.version, prefix.prefixlen, int(prefix.network_address)


Key = TypeVar("Key")


class Groups(Generic[Key, Value]):
    """Items grouped by a key (a peer, an address, a link), each group in
    the order its items came: a lookup by key costs O(1) plus what it
    finds, where a filter over the whole table costs O(n) (issue 14)."""

    def __init__(self):
        self._groups: dict[Key, dict[Value, None]] = {}

    def add(self, key: Key, item: Value) -> None:
        self._groups.setdefault(key, {})[item] = None

    def discard(self, key: Key, item: Value) -> None:
        group = self._groups.get(key)
        if group is not None:
            group.pop(item, None)
            if not group:
                del self._groups[key]

    def get(self, key: Key) -> list[Value]:
        """The group's items (a copy: the caller may change the groups meanwhile)."""
        return list(self._groups.get(key, ()))

    def count(self, key: Key) -> int:
        return len(self._groups.get(key, ()))

    def holds(self, key: Key, item: Value) -> bool:
        return item in self._groups.get(key, ())

    def __contains__(self, key: Key) -> bool:
        return key in self._groups

    def __len__(self) -> int:
        """How many groups (keys with an item)."""
        return len(self._groups)

    def as_dict(self) -> dict[Key, set[Value]]:
        """Every group, for tests that check the index against a walk."""
        return {key: set(items) for key, items in self._groups.items()}


class AddressGroups(Generic[Value]):
    """Items by an address, found by the address itself (`at`) or by an
    IPv6 prefix of one of `lengths` that holds it (`within`): the RO pairs
    of an MN, by its home network prefix, without a walk of every pair."""

    def __init__(self, lengths: tuple[int, ...] = (64,)):
        self.lengths = tuple(sorted(set(lengths)))
        self._at: Groups[Address, Value] = Groups()
        self._prefixes: Groups[tuple[int, int], Address] = Groups()   # (length, IPv6 prefix) -> addresses

    def add(self, address: Address, item: Value) -> None:
        if address not in self._at and address.version == 6:
            for length in self.lengths:
                self._prefixes.add((length, int(address) >> (128 - length)), address)
        self._at.add(address, item)

    def discard(self, address: Address, item: Value) -> None:
        self._at.discard(address, item)
        if address not in self._at and address.version == 6:
            for length in self.lengths:
                self._prefixes.discard((length, int(address) >> (128 - length)), address)

    def at(self, address: Address) -> list[Value]:
        return self._at.get(address)

    def within(self, prefix: IPv6Network) -> list[Value] | None:
        """The items of the addresses prefix holds; None when prefix is of a
        length not grouped (the caller walks instead)."""
        length = prefix.prefixlen
        if length not in self.lengths:
            return None
        addresses = self._prefixes.get((length, int(prefix.network_address) >> (128 - length)))
        return [item for address in addresses for item in self._at.get(address)]

    def as_dict(self) -> dict[Address, set[Value]]:
        return self._at.as_dict()
