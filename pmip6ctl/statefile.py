"""Records of the node cores as JSON and back, for the store (io/store.py,
daemon/persist.py), and the JSON state file of pmip6ctl before the store,
read once when a node first starts with a store.

Dataclasses go to JSON and back through their type hints: addresses and
networks as strings, enums as their values, nested dataclasses as objects."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import socket
import types
import typing
from pathlib import Path
from typing import Any


_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)


_SCALARS = frozenset((str, int, float, bool, type(None)))
_FIELDS: dict[type, tuple[str, ...] | None] = {}     # a class -> its dataclass fields' names (None: no dataclass)


def to_jsonable(value: Any) -> Any:
    """The value as JSON types. The store writes a record per change with
    it, so the common cases come first: scalars by their exact type, a
    dataclass by its fields' names, looked up once per class."""
    cls = type(value)
    if cls in _SCALARS:
        return value
    names = _FIELDS.get(cls, ())
    if names == ():
        names = _FIELDS[cls] = (tuple(f.name for f in dataclasses.fields(cls))
                                if dataclasses.is_dataclass(cls) else None)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _IP_TYPES):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    return value


_INIT_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}    # a dataclass -> (name, type) of its init fields


def from_jsonable(cls: Any, data: Any) -> Any:
    """Rebuilds a value of type cls from to_jsonable's output (a restart
    reads 100,000 records with it: the type hints of a class are looked up
    once)."""
    if data is None:
        return None
    if cls is type(data) and cls in _SCALARS:
        return data
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        last_error = None
        for option in options:
            try:
                return from_jsonable(option, data)
            except (TypeError, ValueError, KeyError) as exc:
                last_error = exc
        raise ValueError(f"{data!r} fits none of {options}: {last_error}")
    if origin in (list, tuple, set):
        (item,) = typing.get_args(cls)[:1] or (Any,)
        return origin(from_jsonable(item, v) for v in data)
    if origin is dict:
        key_type, value_type = typing.get_args(cls)
        return {from_jsonable(key_type, k): from_jsonable(value_type, v) for k, v in data.items()}
    if dataclasses.is_dataclass(cls):
        fields = _INIT_FIELDS.get(cls)
        if fields is None:
            hints = typing.get_type_hints(cls)
            fields = _INIT_FIELDS[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
        return cls(**{name: from_jsonable(hint, data[name]) for name, hint in fields if name in data})
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(data)
    if cls in _IP_TYPES:
        return _address(cls, data)
    if cls is bytes:
        return bytes.fromhex(data)
    if cls is float and isinstance(data, int):
        return float(data)
    if cls is Any or isinstance(data, cls if isinstance(cls, type) else object):
        return data
    raise TypeError(f"{data!r} is not a {cls}")


_SHARED: dict[tuple[type, str], Any] = {}     # addresses many records name (a MAG's): one object each
_SHARED_MAX = 65536


def _address(cls: type, text: str):
    """An address or network from its text, by inet_pton (a restart parses
    100,000 of them; ipaddress's own parser is five times slower). An
    address many records repeat, such as a serving MAG's, is one object."""
    key = (cls, text)
    found = _SHARED.get(key)
    if found is not None:
        return found
    address, _, length = text.partition("/")
    family, top = (socket.AF_INET6, 128) if cls in (ipaddress.IPv6Address, ipaddress.IPv6Network) else \
        (socket.AF_INET, 32)
    try:
        number = int.from_bytes(socket.inet_pton(family, address), "big")
    except OSError:
        raise ValueError(f"{text!r} is not a {cls.__name__}") from None
    if cls in (ipaddress.IPv6Address, ipaddress.IPv4Address):
        value = cls(number)
        if len(_SHARED) < _SHARED_MAX:
            _SHARED[key] = value
        return value
    return cls((number, int(length) if length else top))


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
