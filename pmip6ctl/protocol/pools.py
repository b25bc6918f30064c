"""Home network prefix and IPv4 home address pools of the local mobility anchor.

The LMA assigns each mobile node one HNP (RFC 5213 §5.3.2) and, when asked,
one IPv4 home address (RFC 5844 §3.1.2). Allocation is lowest-free-first, so
the same sequence of requests always yields the same addresses: tests and the
lab are reproducible. Owners are mobile node identifiers.

Each call costs O(log n) whatever was held and released before (issue 14):
the indexes freed below a high-water mark wait in a heap, lowest on top,
and nothing is ever found by walking past the held ones.
"""

from __future__ import annotations

import heapq
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Generic, TypeVar

Item = TypeVar("Item")


class PoolExhausted(Exception):
    """Every prefix or address of the pool is held."""


class _Pool(Generic[Item]):
    """Items numbered first..last; each owner holds at most one.

    Subclasses map an index to its item and back (None: not one of ours).
    """

    def __init__(self, first: int, last: int):
        self._first = first
        self._last = last
        self._index_of_owner: dict[str, int] = {}
        self._owner_of_index: dict[int, str] = {}
        # Every free index is either at or above the high-water mark, or in
        # the heap of freed ones (each once: _freed_set). A freed index that
        # reserve() took since is dropped when it comes to the top.
        self._high = first
        self._freed: list[int] = []
        self._freed_set: set[int] = set()

    def _item(self, index: int) -> Item:
        raise NotImplementedError

    def _index(self, item) -> int | None:
        raise NotImplementedError

    @property
    def capacity(self) -> int:
        return self._last - self._first + 1

    def __len__(self) -> int:
        return len(self._index_of_owner)

    def allocate(self, owner: str) -> Item:
        """The owner's item, or else the lowest free one, now the owner's."""
        if owner in self._index_of_owner:
            return self._item(self._index_of_owner[owner])
        index = self._lowest_free()
        if index is None:
            raise PoolExhausted(f"all {self.capacity} held")
        self._hold(owner, index)
        return self._item(index)

    def _lowest_free(self) -> int | None:
        """The lowest free index (None: none), in O(log n) amortised: every
        freed index below the mark is in the heap, every other one at or
        above it; the mark only moves up, past what reserve() took there."""
        freed, held = self._freed, self._owner_of_index
        while freed:
            index = heapq.heappop(freed)
            self._freed_set.discard(index)
            if index not in held:
                return index
        while self._high in held:
            self._high += 1
        if self._high > self._last:
            return None
        self._high += 1
        return self._high - 1

    def reserve(self, owner: str, item) -> bool:
        """Give the owner this particular item (after a restart, or when a
        MAG names it). False when it is not in the pool, someone else holds
        it, or the owner already holds another."""
        index = self._index(item)
        if index is None:
            return False
        holder = self._owner_of_index.get(index)
        if holder is not None:
            return holder == owner
        if owner in self._index_of_owner:
            return False
        self._hold(owner, index)
        return True

    def release(self, owner: str) -> None:
        index = self._index_of_owner.pop(owner, None)
        if index is not None:
            del self._owner_of_index[index]
            if index < self._high and index not in self._freed_set:
                heapq.heappush(self._freed, index)
                self._freed_set.add(index)

    def owner_of(self, item) -> str | None:
        index = self._index(item)
        return None if index is None else self._owner_of_index.get(index)

    def _hold(self, owner: str, index: int) -> None:
        self._index_of_owner[owner] = index
        self._owner_of_index[index] = owner


class PrefixPool(_Pool[IPv6Network]):
    """The prefixes of length ``prefix_length`` inside ``pool``."""

    def __init__(self, pool: IPv6Network, prefix_length: int = 64):
        if not pool.prefixlen <= prefix_length <= 128:
            raise ValueError(f"cannot cut /{prefix_length} prefixes out of {pool}")
        self.pool = pool
        self.prefix_length = prefix_length
        self._shift = 128 - prefix_length
        self._base = int(pool.network_address)
        super().__init__(0, (1 << (prefix_length - pool.prefixlen)) - 1)

    def _item(self, index: int) -> IPv6Network:
        return IPv6Network((self._base + (index << self._shift), self.prefix_length))

    def _index(self, prefix) -> int | None:
        if not isinstance(prefix, IPv6Network) or prefix.prefixlen != self.prefix_length:
            return None
        index = (int(prefix.network_address) - self._base) >> self._shift
        return index if self._first <= index <= self._last else None       # in the pool


class AddressPool(_Pool[IPv4Address]):
    """The addresses of ``pool``, without its network and broadcast
    addresses when it has them (prefixes shorter than /31, RFC 3021)."""

    def __init__(self, pool: IPv4Network):
        self.pool = pool
        ends = 1 if pool.prefixlen < 31 else 0
        super().__init__(ends, pool.num_addresses - 1 - ends)

    def _item(self, index: int) -> IPv4Address:
        return self.pool.network_address + index

    def _index(self, address) -> int | None:
        if not isinstance(address, IPv4Address) or address not in self.pool:
            return None
        index = int(address) - int(self.pool.network_address)
        return index if self._first <= index <= self._last else None
