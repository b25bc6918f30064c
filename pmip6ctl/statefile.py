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


def from_jsonable(cls: Any, data: Any) -> Any:
    """Rebuilds a value of type cls from to_jsonable's output."""
    if data is None:
        return None
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
        hints = typing.get_type_hints(cls)
        kwargs = {f.name: from_jsonable(hints[f.name], data[f.name])
                  for f in dataclasses.fields(cls) if f.init and f.name in data}
        return cls(**kwargs)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(data)
    if cls in _IP_TYPES:
        return cls(data)
    if cls is bytes:
        return bytes.fromhex(data)
    if cls is float and isinstance(data, int):
        return float(data)
    if cls is Any or isinstance(data, cls if isinstance(cls, type) else object):
        return data
    raise TypeError(f"{data!r} is not a {cls}")


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
