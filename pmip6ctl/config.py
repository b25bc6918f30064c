"""Node configuration: one TOML file per node (LMA, MAG or CN agent).

`load_config(path)` returns a frozen `NodeConfig` with typed values (ipaddress
objects, Path, int, float) and every default filled in. Any problem raises
`ConfigError`, whose text is exactly one line:

    <file>: <dotted.field>: <why>

The schema is declared once, as the dataclasses below: each TOML key is a
dataclass field whose metadata names the converter that checks and types it.
`KNOWN_KEYS` is derived from the same declaration. Rules that tie two fields
together live in `_cross_checks`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import defs
from .security import MAX_RR_BINDING_LIFETIME

__all__ = [
    "KNOWN_KEYS", "ROLES", "MnId", "SecuritySection", "read_key", "read_keys", "AddressesSection", "CnSection", "ConfigError", "ControlSection",
    "DataplaneSection", "InterfacesSection", "LmaSection", "MagSection", "MetricsSection",
    "HeartbeatSection", "NodeConfig", "NodeSection", "Peer", "RoPolicyRule", "RoSection", "TimersSection",
    "load_config", "parse_config",
]

ROLES = ("lma", "mag", "cn")

# RFC 6275 §6.1.7: the Lifetime field counts 4-second units in 16 bits.
MAX_BINDING_LIFETIME = 0xFFFF * 4
U32_MAX = 2**32 - 1
IPV6_MIN_MTU = 1280  # RFC 8200 §5


class ConfigError(ValueError):
    """A configuration problem, explained in one line: `<file>: <field>: <why>`."""

    def __init__(self, file: str, field: str | None, reason: str):
        self.file = file
        self.field = field          # dotted path such as "lma.hnp_pool", or None
        self.reason = reason
        self.every = [self]         # with the problems found after it (check_config)
        super().__init__(f"{file}: {field}: {reason}" if field else f"{file}: {reason}")


class _Invalid(Exception):
    """A problem found by a converter; the loader adds the file and the field."""

    def __init__(self, why: str, path: tuple[str | int, ...] = ()):
        self.why = why
        self.path = path

    def inside(self, key: str | int) -> _Invalid:
        return _Invalid(self.why, (key, *self.path))


class _Many(_Invalid):
    """Every problem found in one table (and the tables inside it), in the
    order the file declares its keys; why and path are the first one's."""

    def __init__(self, problems: list[_Invalid]):
        super().__init__(problems[0].why, problems[0].path)
        self.problems = problems

    def inside(self, key: str | int) -> _Many:
        return _Many([problem.inside(key) for problem in self.problems])


def _each(problem: _Invalid) -> list[_Invalid]:
    return problem.problems if isinstance(problem, _Many) else [problem]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else _quote(part)
            out += f".{key}" if out else key
    return out


def _quote(text: str) -> str:
    """A TOML basic string, escaped so that it stays on one line."""
    escaped = "".join(
        c if c.isprintable() and c not in '"\\' else
        {'"': '\\"', "\\": "\\\\"}.get(c, f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in text
    )
    return f'"{escaped}"'


def _show(value: Any, depth: int = 0) -> str:
    """A value as the user wrote it (TOML-ish), one line, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    elif isinstance(value, list):
        text = "[...]" if depth else "[" + ", ".join(_show(v, 1) for v in value[:8]) + "]"
    elif isinstance(value, dict):
        text = "{...}"  # never the contents: a misplaced [peers] table holds a key
    else:  # TOML dates and times
        text = value.isoformat()
    return text if len(text) <= 60 else text[:57] + "..."


# --- converters: raw TOML value -> typed value, or _Invalid ----------------------------------

Converter = Callable[[Any], Any]


def _typed(expected: type | tuple[type, ...], what: str, value: Any) -> Any:
    # bool is an int in Python but not in TOML.
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise _Invalid(f"{_show(value)} is not {what}")
    return value


def _boolean(value: Any) -> bool:
    return _typed(bool, "a boolean (true or false)", value)


def _string(pattern: str | None = None, what: str = "") -> Converter:
    regex = re.compile(pattern) if pattern else None

    def convert(value: Any) -> str:
        _typed(str, "a string", value)
        if regex and not regex.fullmatch(value):
            raise _Invalid(f"{_show(value)} is not {what}")
        return value
    return convert


def _choice(*options: str) -> Converter:
    def convert(value: Any) -> str:
        if value not in options or not isinstance(value, str):
            raise _Invalid(f"{_show(value)} is not one of {', '.join(options)}")
        return value
    return convert


def _integer(lo: int, hi: int, *, also: tuple[int, ...] = (), note: str = "") -> Converter:
    span = " or ".join([*map(str, also), f"in {lo}..{hi}"])
    suffix = f" ({note})" if note else ""

    def convert(value: Any) -> int:
        _typed(int, "an integer", value)
        if not (lo <= value <= hi or value in also):
            raise _Invalid(f"{_show(value)} is not {span}{suffix}")
        return value
    return convert


def _number(lo: float, hi: float = math.inf, *, closed: bool = False, off: bool = False) -> Converter:
    """A float in the open interval (lo, hi), or [lo, hi] if closed; an
    integer is accepted (TOML `timeout = 2`). off: 0 too, which turns the
    setting off."""
    if closed:
        span = f"in {lo:g}..{hi:g} seconds"
    else:
        span = f"> {lo:g}" if hi == math.inf else f"in ({lo:g}, {hi:g})"
    if off:
        span = f"0 (off) or {span}"

    def convert(value: Any) -> float:
        _typed((int, float), "a number", value)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) and not closed:
            raise _Invalid(f"{_show(value)} is not a finite number")
        inside = lo <= number <= hi if closed else lo < number < hi
        if not (inside or (off and number == 0)):
            raise _Invalid(f"{_show(value)} is not {span}")
        return number
    return convert


_NOT_UNICAST = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("multicast", lambda a: a.is_multicast),
    ("link-local", lambda a: a.is_link_local),
    ("scoped", lambda a: getattr(a, "scope_id", None)),
)


def _address(version: int) -> Converter:
    """A routable unicast address: a proxy CoA, an LMA or a peer must be reachable off-link."""
    kind = {6: IPv6Address, 4: IPv4Address}[version]

    def convert(value: Any) -> IPv6Address | IPv4Address:
        _typed(str, "a string", value)
        try:
            address = kind(value)
        except ValueError:
            raise _Invalid(f"{_show(value)} is not an IPv{version} address") from None
        for name, test in _NOT_UNICAST:
            if test(address):
                raise _Invalid(f"{_show(value)} is {name}; a routable unicast address is needed")
        return address
    return convert


def _prefix(*versions: int) -> Converter:
    what = " or ".join(f"IPv{v}" for v in versions)

    def convert(value: Any) -> IPv6Network | IPv4Network:
        _typed(str, "a string", value)
        try:
            network = ip_network(value, strict=False)
        except ValueError:
            network = None
        if network is None or network.version not in versions:
            raise _Invalid(f"{_show(value)} is not an {what} prefix")
        try:
            return ip_network(value)
        except ValueError:
            hint = f"host bits set; did you mean {network}?"
            raise _Invalid(f"{_show(value)} is not an {what} prefix ({hint})") from None
    return convert


def _list(convert: Converter, *, at_least: int = 0, unique: bool = False) -> Converter:
    def convert_list(value: Any) -> tuple:
        _typed(list, "a list", value)
        if len(value) < at_least:
            raise _Invalid(f"needs at least {at_least} entr{'y' if at_least == 1 else 'ies'}")
        out = []
        for i, item in enumerate(value):
            try:
                typed = convert(item)
            except _Invalid as problem:
                raise problem.inside(i) from None
            if unique and typed in out:
                raise _Invalid(f"{_show(item)} is listed twice", (i,))
            out.append(typed)
        return tuple(out)
    return convert_list


def _path(value: Any) -> Path:
    _typed(str, "a string", value)
    if not value.startswith("/") or "\0" in value:
        raise _Invalid(f"{_show(value)} is not an absolute path")
    return Path(value)


_name = _string(r"[a-z0-9-]{1,32}", "a valid name ([a-z0-9-], 1-32 characters)")

# Linux dev_valid_name(): shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or
# whitespace. ASCII only, so that 15 characters are 15 octets.
_ifname = _string(r"(?!\.\.?$)(?:(?![/:])[!-~]){1,15}",
                  "a valid interface name (1-15 ASCII characters, no '/', ':' or whitespace)")


MIN_KEY_OCTETS = 16


def _key_path(value: Any) -> Path:
    _typed(str, "a string", value)
    if not value or "\0" in value:
        raise _Invalid(f"{_show(value)} is not a file name")
    return Path(value)


def read_key(path: Path) -> bytes:
    """A key file: hex, at least MIN_KEY_OCTETS octets, readable by its owner
    only (anyone else who can read it can sign as us). The key itself is
    never echoed in a message."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise _Invalid(f"{path} does not exist (make one with `pmip6ctl keygen {path}`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & 0o077:
        raise _Invalid(f"{path} is readable by group or others (mode {mode & 0o777:04o}): chmod 600 it")
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise _Invalid(f"{path} does not hold a hex key (content not shown)") from None
    if len(key) < MIN_KEY_OCTETS:
        raise _Invalid(f"{path} holds {len(key)} octets; at least {MIN_KEY_OCTETS} are needed")
    return key


_LISTEN = re.compile(r"\[(?P<v6>[^\]]*)\]:(?P<port6>[0-9]+)|(?P<host>[^:\[\]]*):(?P<port>[0-9]+)")


def _listen(value: Any) -> tuple[str, int]:
    _typed(str, "a string", value)
    match = _LISTEN.fullmatch(value)
    if not match:
        raise _Invalid(f"{_show(value)} is not host:port or [ipv6]:port")
    host, port = (match["v6"], match["port6"]) if match["port6"] else (match["host"], match["port"])
    try:
        valid = host == "localhost" or ip_address(host).version == (6 if match["port6"] else 4)
    except ValueError:
        valid = False
    if not valid:
        raise _Invalid(f"{_show(value)}: the host must be an IP address or localhost")
    if not 1 <= int(port) <= 65535:
        raise _Invalid(f"{_show(value)}: port {int(port)} is not in 1..65535")
    return host, int(port)


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", re.I)


def _access_mac(value: Any) -> str:
    """A unicast MAC address in lower case, or "" (keep the links' own)."""
    _typed(str, "a string", value)
    if value and (not _MAC.fullmatch(value) or int(value[:2], 16) & 1):
        raise _Invalid(f"{_show(value)} is not a unicast MAC address (aa:bb:cc:dd:ee:ff, first octet even) or \"\"")
    return value.lower()


def _nai(value: Any) -> str:
    # RFC 4283: the MN-ID option's length octet also counts its subtype octet.
    _typed(str, "a string", value)
    printable = all(c.isprintable() and not c.isspace() for c in value)
    if not printable or not 1 <= len(value.encode(errors="replace")) <= 254:
        raise _Invalid(f"{_show(value)} is not an NAI (1-254 octets, no whitespace)")
    return value


@dataclass(frozen=True)
class MnId:
    """An [mag.mn_ids] entry: the NAI behind a link-layer address, and the
    access links it may appear on (empty: any of this MAG's)."""
    nai: str
    links: tuple[str, ...] = ()


def _mn_ids(value: Any) -> Mapping[str, MnId]:
    """MAC address -> MnId, keys normalised to lower case. A value is an NAI,
    or a table {nai = "...", links = ["eth1"]}."""
    _typed(dict, "a table", value)
    out: dict[str, MnId] = {}
    for mac, who in value.items():
        if not _MAC.fullmatch(mac):
            raise _Invalid(f"{_show(mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        if mac.lower() in out:
            raise _Invalid(f"{_show(mac)} is listed twice")
        try:
            if isinstance(who, dict):
                unknown = set(who) - {"nai", "links"}
                if unknown:
                    raise _Invalid("unknown key", (sorted(unknown)[0],))
                if "nai" not in who:
                    raise _Invalid("required", ("nai",))
                try:
                    nai = _nai(who["nai"])
                except _Invalid as problem:
                    raise problem.inside("nai") from None
                try:
                    links = _list(_ifname, unique=True)(who.get("links", []))
                except _Invalid as problem:
                    raise problem.inside("links") from None
                out[mac.lower()] = MnId(nai, links)
            else:
                out[mac.lower()] = MnId(_nai(who))
        except _Invalid as problem:
            raise problem.inside(mac) from None
    return MappingProxyType(out)


def _key(convert: Converter, default: Any = dataclasses.MISSING, *,
        factory: Callable[[], Any] | Any = dataclasses.MISSING, table: type | None = None,
        **options: Any) -> Any:
    """Declare a TOML key: its converter, its default (none: required) and, for a
    table or a list of tables, the dataclass that describes it."""
    return field(default=default, default_factory=factory,
                 metadata={"convert": convert, "table": table}, **options)


def _table(cls: type, default: Any = dataclasses.MISSING, **options: Any) -> Any:
    return _key(lambda value: _build(cls, value), default, table=cls, **options)


def _tables(cls: type) -> Any:
    return _key(_list(lambda value: _build(cls, value)), (), table=cls)


def _keys(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if "convert" in f.metadata}


def _build(cls: type, raw: Any, **extra: Any) -> Any:
    """A section dataclass from a TOML table: unknown keys first, then each key in declared order."""
    _typed(dict, "a table", raw)
    problems = list(_unknown(cls, raw))
    values = {}
    for name, f in _keys(cls).items():
        if name in raw or _required(f):
            try:
                values[name] = _convert(f, raw)
            except _Invalid as problem:     # go on: `config check` shows every problem
                problems += _each(problem)
    if problems:
        raise _Many(problems)
    return cls(**values, **extra)


def _unknown(cls: type, raw: dict[str, Any]) -> Iterator[_Invalid]:
    keys = _keys(cls)
    for name in raw:
        if name not in keys:
            close = difflib.get_close_matches(name, keys, n=1)
            yield _Invalid("unknown key" + (f" (did you mean {close[0]}?)" if close else ""), (name,))


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(f: dataclasses.Field, raw: dict[str, Any]) -> Any:
    if f.name not in raw:
        raise _Invalid("required", (f.name,))
    try:
        return f.metadata["convert"](raw[f.name])
    except _Invalid as problem:
        raise problem.inside(f.name) from None


def _constant(name: str) -> Callable[[], int]:
    """A default defined once, in bpf/constants.h."""
    return lambda: defs.constants()[name]


# --- the schema ------------------------------------------------------------------------------

Prefix = IPv6Network | IPv4Network
_section = dict(frozen=True, kw_only=True)


@dataclass(**_section)
class NodeSection:
    name: str = _key(_name)
    role: str = _key(_choice(*ROLES))


@dataclass(**_section)
class InterfacesSection:
    # Where the transport-side XDP program attaches (the LMA: also its Internet-facing side).
    transport: tuple[str, ...] = _key(_list(_ifname, at_least=1, unique=True))
    # MN-facing interfaces: required for a MAG, absent for the others.
    access: tuple[str, ...] = _key(_list(_ifname, unique=True), ())


@dataclass(**_section)
class AddressesSection:
    ipv6: IPv6Address = _key(_address(6))            # proxy CoA, LMA address or CN address
    ipv4: IPv4Address | None = _key(_address(4), None)  # IPv4 proxy CoA or LMA IPv4 address


@dataclass(**_section)
class RoPolicyRule:
    """One [[lma.ro_policy]] rule; the first rule whose prefixes match decides."""
    action: str = _key(_choice("allow", "deny"))
    mn: Prefix = _key(_prefix(6, 4))
    cn: Prefix = _key(_prefix(6, 4))

    def matches(self, mn: IPv6Address | IPv4Address, cn: IPv6Address | IPv4Address) -> bool:
        return mn in self.mn and cn in self.cn


@dataclass(**_section)
class LmaSection:
    hnp_pool: IPv6Network = _key(_prefix(6))
    hnp_length: int = _key(_integer(1, 64), 64)
    ipv4_pool: IPv4Network | None = _key(_prefix(4), None)
    max_lifetime: int = _key(_integer(4, MAX_BINDING_LIFETIME), 3600)
    timestamp_window: float = _key(_number(0), 7.0)
    # None: any MAG may register.
    allowed_mags: tuple[IPv6Address, ...] | None = _key(_list(_address(6), at_least=1, unique=True), None)
    # Empty: RO allowed for every pair.
    ro_policy: tuple[RoPolicyRule, ...] = _tables(RoPolicyRule)
    # Refresh time (s) in the NAT Detection option: how often a MAG behind a
    # NAT sends keepalives (RFC 5555 §4.1, RFC 5844); below the NAT's UDP timeout.
    nat_keepalive: int = _key(_integer(1, 3600), 20)
    # MAG queries out to the peer LMAs at once (scenario 2); past it a query gets no
    # answer and waits for its MAG's retry (docs/operations.md).
    max_pending_queries: int = _key(_integer(1, U32_MAX), 4096)
    # Peer LMAs' answers cached at once (each for the lifetime it came with); past it
    # the oldest goes, and its MAG's next query asks the peers again.
    max_cached_answers: int = _key(_integer(1, U32_MAX), 65536)
    # Both MNs at the MAG that asks (RFC 6705 local routing): consent (LRA status 0
    # naming that MAG) or refuse (128). Pairs ro_policy denies are refused either way.
    local_routing: bool = _key(_boolean, True)
    # The downlink hold (docs/operations.md, "Downlink hold"): what arrives for an MN
    # between two MAGs (deregistered by the old, not yet registered by the new) waits
    # for the next binding. Per MN, in all, how long, and how long after the new
    # binding's PBA it leaves (the new MAG installs the MN on the PBA).
    hold_downlink: bool = _key(_boolean, True)
    hold_packets: int = _key(_integer(1, 1_000_000), 256)
    hold_total: int = _key(_integer(1, 10_000_000), 4096)
    hold_seconds: float = _key(_number(0.01, 60, closed=True), 2.0)
    hold_release_delay: float = _key(_number(0, 1, closed=True), 0.05)

    def ro_allowed(self, mn: IPv6Address | IPv4Address, cn: IPv6Address | IPv4Address) -> bool:
        rule = next((r for r in self.ro_policy if r.matches(mn, cn)), None)
        return rule is None or rule.action == "allow"


@dataclass(**_section)
class MagSection:
    lma: IPv6Address = _key(_address(6))
    lma_ipv4: IPv4Address | None = _key(_address(4), None)
    transport: str = _key(_choice("ipv6", "ipv4"), "ipv6")
    lifetime: int = _key(_integer(4, MAX_BINDING_LIFETIME), 3600)
    request_ipv4: bool = _key(_boolean, True)
    # MAC (lower case) -> NAI, or {nai, links}: who may attach by Router Solicitation,
    # and on which access links (docs/security.md). Nobody else attaches by RS.
    mn_ids: Mapping[str, MnId] = _key(_mn_ids, factory=lambda: MappingProxyType({}), hash=False)
    # 0: the link MTU minus the tunnel overhead.
    advertise_mtu: int = _key(_integer(IPV6_MIN_MTU, 65535, also=(0,)), 0)
    # Home network prefix lengths the MAG installs; a PBA granting another is refused.
    hnp_lengths: tuple[int, ...] = _key(_list(_integer(1, 128), at_least=1, unique=True), (64,))
    # A registration the LMA refused is tried again after this many seconds while the MN
    # stays on its link, doubling up to 16x; 0: only when the MN attaches again.
    retry_after_rejection: float = _key(_number(0), 30.0)
    # The link-layer address of every access link (RFC 5213 §6.9.3): the same on every
    # MAG of the domain, so that an MN that moves keeps its neighbour entry for its
    # default router and sends on at once; "": leave the links' own addresses.
    access_mac: str = _key(_access_mac, "02:50:4d:49:50:36")
    # Handover buffering (docs/operations.md): an attaching MN's uplink packets wait
    # while its PBU is in flight and leave on the PBA. Per MN, in all, and how long.
    buffer_uplink: bool = _key(_boolean, True)
    buffer_packets: int = _key(_integer(1, 1_000_000), 256)
    buffer_total: int = _key(_integer(1, 10_000_000), 4096)
    buffer_seconds: float = _key(_number(0.01, 60, closed=True), 2.0)


@dataclass(**_section)
class RoSection:
    enabled: bool = _key(_boolean, True)
    # Packets of an MN->CN flow before RO starts; 0: only on `pmip6ctl ro start`.
    trigger_packets: int = _key(_integer(0, U32_MAX), 10)
    lifetime: int = _key(_integer(4, MAX_BINDING_LIFETIME), MAX_RR_BINDING_LIFETIME)
    retry_interval: float = _key(_number(0), 30.0)   # after a failed RR for a pair
    # "quick": draft §2.2 with peers listed in [[peers]] with quick_mode = true; RR otherwise.
    mode: str = _key(_choice("rr", "quick"), "rr")
    # As the responder: the refresh time our NAT Detection option asks of an initiator behind a NAT.
    nat_keepalive: int = _key(_integer(1, 3600), 20)
    # RO attempts a MAG holds (any phase), in all and per MN: a new flow past either
    # limit pushes out the oldest attempt in backoff, or is not optimized (docs/operations.md).
    max_attempts: int = _key(_integer(1, U32_MAX), 65536)
    max_attempts_per_mn: int = _key(_integer(1, U32_MAX), 256)
    # Pairs whose RO failed, remembered (for a longer backoff) at most this many; past
    # it the one due to be forgotten soonest goes (docs/operations.md).
    max_remembered_failures: int = _key(_integer(1, U32_MAX), 65536)
    # As the responder (MAG, CN agent): the newest RO BU Timestamp per pair, kept for
    # the Timestamp window against replay, at most this many; past it the oldest goes.
    max_replay_entries: int = _key(_integer(1, U32_MAX), 65536)
    # Which pairs may be optimized, for both roles (first match wins; no match: allowed).
    policy: tuple[RoPolicyRule, ...] = _tables(RoPolicyRule)
    # MAG: when the LMA names this MAG as the CN's (both MNs attached here) and
    # consents, forward between the access links in XDP (RFC 6705); false: LMA path.
    local_routing: bool = _key(_boolean, True)

    def allowed(self, mn: IPv6Address | IPv4Address, cn: IPv6Address | IPv4Address) -> bool:
        rule = next((r for r in self.policy if r.matches(mn, cn)), None)
        return rule is None or rule.action == "allow"


PEER_ROLES = ("lma", "mag", "cn")


@dataclass(**_section)
class Peer:
    """A [[peers]] entry: the peer authentication database (RFC 4285; draft
    §2.2 for quick mode). The key lives in key_file (docs/security.md)."""
    name: str = _key(_name)
    # What the peer is to us: an LMA (our LMA, or a peer LMA for scenario 2), a MAG
    # (a MAG registering with us, or an RO peer), a CN agent. Default: "lma" at an LMA,
    # "mag" elsewhere.
    role: str | None = _key(_choice(*PEER_ROLES), None)
    address: IPv6Address = _key(_address(6))
    ipv4: IPv4Address | None = _key(_address(4), None)
    spi: int = _key(_integer(256, U32_MAX, note="SPIs 0-255 are reserved by RFC 4285"))
    # A file holding the key in hex (at least 16 octets), readable by its owner only;
    # a relative path is taken from the config file's folder. `pmip6ctl keygen` makes one.
    key_file: Path = _key(_key_path)
    quick_mode: bool = _key(_boolean, True)
    # Its IPv4 signaling may come through a NAT: any outer source, the NAT's mapping
    # (otherwise it must come from `ipv4`).
    behind_nat: bool = _key(_boolean, False)
    # Quick mode: the MN prefixes this peer's key may bind (its own MNs); empty: any.
    prefixes: tuple[Prefix, ...] = _key(_list(_prefix(6, 4), unique=True), ())
    key: bytes = field(default=b"", repr=False, compare=False)   # from key_file, by load_config


@dataclass(**_section)
class SecuritySection:
    # "hmac-sha256": PBU/PBA, LRI/LRA and Heartbeats between MAGs and LMAs carry an RFC 4285
    # option with HMAC-SHA256 under the peer's key, and nothing else is believed.
    # "none": no authentication at all (a warning at start): for labs behind IPsec only.
    auth: str = _key(_choice("hmac-sha256", "none"), "hmac-sha256")
    # Key rotation by reload (SIGHUP or `pmip6ctl reload`): a replaced key is still believed
    # for this long, or until the peer is seen using the new one, whichever comes first.
    key_grace: float = _key(_number(0), 300.0)
    # Answers to input anyone could have sent (HoT, CoT, Binding Errors) go out at most
    # this many a second per destination prefix (/64, IPv4 /24), answer_burst at once:
    # a forged source draws no more than that. 0: no limit.
    answer_rate: float = _key(_number(0, off=True), 200.0)
    answer_burst: int = _key(_integer(1, 1_000_000), 400)
    # Destination prefixes whose answer budget is tracked; past it the least
    # recently seen is forgotten (and starts again with a full burst).
    answer_prefixes: int = _key(_integer(1, U32_MAX), 65536)


@dataclass(**_section)
class TimersSection:
    # RFC 6275 §12 INITIAL_BINDACK_TIMEOUT and MAX_BINDACK_TIMEOUT, doubling in between.
    initial_bindack_timeout: float = _key(_number(0), 1.0)
    max_bindack_timeout: float = _key(_number(0), 32.0)
    # Refresh a binding when this fraction of its lifetime has passed.
    refresh_fraction: float = _key(_number(0, 1), 0.8)


@dataclass(**_section)
class HeartbeatSection:
    """Liveness (RFC 5847; docs/operations.md says how to size it)."""
    # HEARTBEAT_INTERVAL between a MAG and its LMA, seconds; 0: no heartbeats.
    interval: float = _key(_number(0.1, 86400, closed=True, off=True), 60.0)
    # MISSING_HEARTBEATS_ALLOWED: that many unanswered in a row and the peer is dead.
    missed: int = _key(_integer(1, 255), 3)
    # The same between the two ends of an RO binding (MAG-MAG, MAG-CN agent): a dead
    # RO peer's pairs fall back to the LMA path.
    ro_interval: float = _key(_number(0.1, 86400, closed=True, off=True), 10.0)
    ro_missed: int = _key(_integer(1, 255), 3)


@dataclass(**_section)
class DataplaneSection:
    pin_root: Path = _key(_path, Path("/sys/fs/bpf/pmip6"))
    generic_mode: bool = _key(_boolean, False)
    max_mn_entries: int = _key(_integer(1, U32_MAX), factory=_constant("MAX_MN_ENTRIES"))
    max_ro_entries: int = _key(_integer(1, U32_MAX), factory=_constant("MAX_RO_ENTRIES"))
    max_tunnels: int = _key(_integer(1, U32_MAX), factory=_constant("MAX_TUNNELS"))
    max_peers: int = _key(_integer(1, U32_MAX), factory=_constant("MAX_PEERS"))
    max_flows: int = _key(_integer(1, U32_MAX), factory=_constant("MAX_FLOWS"))
    event_interval_ms: int = _key(_integer(1, 60_000), 1000)
    hop_limit: int = _key(_integer(1, 255), 64)
    # Mobility messages XDP hands to the daemon (and notices of vanished RO
    # bindings), per CPU and second, and how many at once; the excess is
    # dropped and counted (drop_punt_limit). 0: no limit.
    punt_rate: int = _key(_integer(0, 1_000_000_000), 500)
    punt_burst: int = _key(_integer(1, 1_000_000), 64)
    # ICMP errors (Packet Too Big, fragmentation needed) XDP sends for packets
    # too big for their tunnel, per CPU and second, and how many at once; the
    # excess is dropped and counted (drop_icmp_limit). Linux's global default
    # (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst). 0: no limit.
    icmp_rate: int = _key(_integer(0, 1_000_000_000), 1000)
    icmp_burst: int = _key(_integer(1, 1_000_000), 50)
    # Data-plane events (punts, RO triggers) waiting for the daemon; beyond
    # this they are dropped and counted (pmip6_dataplane_events_dropped).
    event_queue: int = _key(_integer(1, 10_000_000), 4096)


@dataclass(**_section)
class MetricsSection:
    # Loopback by default. A management address is fine as it is; a wildcard
    # (0.0.0.0, ::), a public address, or (checked at start) an address on a
    # MAG's access interface serves /metrics and /healthz to the MN side or
    # the Internet, and needs expose = true (docs/operations.md, "Metrics").
    listen: tuple[str, int] = _key(_listen, ("127.0.0.1", 9436))
    expose: bool = _key(_boolean, False)

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]


@dataclass(**_section)
class ControlSection:
    # None only until load_config fills in /run/pmip6ctl/<node.name>.sock.
    socket: Path | None = _key(_path, None)


@dataclass(**_section)
class StoreSection:
    # The node's SQLite file (issue 14; docs/operations.md). None only until
    # load_config fills in /var/lib/pmip6ctl/<node.name>.db.
    path: Path | None = _key(_path, None)
    # "full": each commit is on disk before the PBA/BA it holds back leaves,
    # across a power cut too; "normal": across a crash of the daemon only.
    synchronous: str = _key(_choice("full", "normal"), "full")


@dataclass(**_section)
class CnSection:
    egress_interface: str = _key(_ifname, "pmip6-egress")   # the veth for the agent's replies


@dataclass(**_section)
class NodeConfig:
    node: NodeSection = _table(NodeSection)
    interfaces: InterfacesSection = _table(InterfacesSection)
    addresses: AddressesSection = _table(AddressesSection)
    lma: LmaSection | None = _table(LmaSection, None)     # iff node.role = "lma"
    mag: MagSection | None = _table(MagSection, None)     # iff node.role = "mag"
    ro: RoSection = _table(RoSection, factory=RoSection)
    peers: tuple[Peer, ...] = _tables(Peer)
    security: SecuritySection = _table(SecuritySection, factory=SecuritySection)
    timers: TimersSection = _table(TimersSection, factory=TimersSection)
    heartbeat: HeartbeatSection = _table(HeartbeatSection, factory=HeartbeatSection)
    dataplane: DataplaneSection = _table(DataplaneSection, factory=DataplaneSection)
    metrics: MetricsSection = _table(MetricsSection, factory=MetricsSection)
    control: ControlSection = _table(ControlSection, factory=ControlSection)
    store: StoreSection = _table(StoreSection, factory=StoreSection)
    cn: CnSection | None = _table(CnSection, None)        # iff node.role = "cn"
    path: Path = Path()                                   # the file it came from

    def mn_id(self, mac: str) -> str | None:
        """The NAI of an MN detected by its Router Solicitation (MAG only)."""
        who = (self.mag.mn_ids if self.mag else {}).get(mac.lower())
        return who.nai if who else None

    def peer(self, address: IPv6Address | IPv4Address) -> Peer | None:
        """The [[peers]] entry for a peer's IPv6 or IPv4 address."""
        return next((p for p in self.peers if address in (p.address, p.ipv4)), None)

    def peers_of(self, role: str) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.role == role)

    @property
    def authenticated(self) -> bool:
        """Signaling between MAGs and LMAs is authenticated (security.auth)."""
        return self.security.auth != "none"


def _known_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, frozenset[str]]]:
    for name, f in _keys(cls).items():
        if f.metadata["table"]:
            yield f"{prefix}{name}", frozenset(_keys(f.metadata["table"]))
            yield from _known_keys(f.metadata["table"], f"{prefix}{name}.")


# Section -> accepted keys; nested tables are dotted ("lma.ro_policy").
KNOWN_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(dict(_known_keys(NodeConfig)))


# --- rules that tie fields together -----------------------------------------------------------

def metrics_exposure(host: str) -> str | None:
    """Why a metrics listen address reaches beyond a management network, or
    None: every address (a wildcard), or a publicly routable one."""
    if host == "localhost":
        return None
    address = ip_address(host)
    if address.is_unspecified:
        return f"{host} listens on every address, the MN side and the Internet included"
    if address.is_global:
        return f"{host} is a public address"
    return None


def _cross_checks(c: NodeConfig) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(field path, why) for each broken rule, in section order."""
    role, interfaces = c.node.role, c.interfaces
    if role == "mag" and not interfaces.access:
        yield ("interfaces", "access"), 'required when node.role = "mag"'
    if role != "mag" and interfaces.access:
        yield ("interfaces", "access"), 'only allowed when node.role = "mag"'
    for i, name in enumerate(interfaces.access):
        if name in interfaces.transport:
            yield ("interfaces", "access", i), f"{name!r} is also a transport interface"
    for mac, who in (c.mag.mn_ids.items() if c.mag else ()):
        for i, link in enumerate(who.links):
            if link not in interfaces.access:
                yield ("mag", "mn_ids", mac, "links", i), f"{link!r} is not one of interfaces.access"
    if c.lma and c.lma.hnp_length < c.lma.hnp_pool.prefixlen:
        pool = c.lma.hnp_pool.prefixlen
        yield ("lma", "hnp_length"), f"{c.lma.hnp_length} is shorter than lma.hnp_pool (/{pool})"
    for where, rules in ((("lma", "ro_policy"), c.lma.ro_policy if c.lma else ()), (("ro", "policy"), c.ro.policy)):
        for i, rule in enumerate(rules):
            if rule.mn.version != rule.cn.version:  # a flow is IPv6 or IPv4 end to end
                why = f"'{rule.cn}' is IPv{rule.cn.version} but mn is IPv{rule.mn.version}"
                yield (*where, i, "cn"), why
    if c.mag and c.mag.transport == "ipv4":
        # RFC 5844: the MAG needs an IPv4 proxy CoA and the LMA's IPv4 address.
        for path, value in ((("mag", "lma_ipv4"), c.mag.lma_ipv4), (("addresses", "ipv4"), c.addresses.ipv4)):
            if value is None:
                yield path, 'required when mag.transport = "ipv4"'
    if c.ro.mode == "rr" and c.ro.lifetime > MAX_RR_BINDING_LIFETIME:
        # RFC 6275 §5.2.6: a binding authorised by return routability lasts at most this long.
        yield ("ro", "lifetime"), (f"{c.ro.lifetime} exceeds MAX_RR_BINDING_LIFETIME "
                                   f'({MAX_RR_BINDING_LIFETIME}) with ro.mode = "rr"')
    if c.mag and c.authenticated and not any(p.role == "lma" and p.address == c.mag.lma for p in c.peers):
        yield (("peers",), f'no entry with role = "lma" and address = "{c.mag.lma}" (mag.lma): '
                           'give the LMA\'s key, or set security.auth = "none"')
    for unique in ("name", "spi", "address"):
        seen: dict[Any, int] = {}
        for i, peer in enumerate(c.peers):
            value = getattr(peer, unique)
            if value in seen:
                shown = _show(value if unique == "spi" else str(value))
                yield ("peers", i, unique), f"{shown} is already used by peers[{seen[value]}]"
            seen.setdefault(value, i)
    timers = c.timers
    if timers.max_bindack_timeout < timers.initial_bindack_timeout:
        why = (f"{timers.max_bindack_timeout:g} is less than "
               f"timers.initial_bindack_timeout ({timers.initial_bindack_timeout:g})")
        yield ("timers", "max_bindack_timeout"), why
    if not c.metrics.expose and (why := metrics_exposure(c.metrics.host)):
        yield ("metrics", "listen"), f"{why}: give a loopback or management address, or set metrics.expose = true"
    if c.cn and c.cn.egress_interface in interfaces.transport:
        yield ("cn", "egress_interface"), f"{c.cn.egress_interface!r} is also a transport interface"


def _from_document(doc: dict[str, Any], path: Path) -> NodeConfig:
    problems = list(_unknown(NodeConfig, doc))
    # [node] first: its role decides which of [lma], [mag] and [cn] belongs.
    try:
        node = _convert(_keys(NodeConfig)["node"], doc)
    except _Invalid as problem:
        raise _Many(problems + _each(problem)) from None
    for role in ROLES:
        if role in doc and role != node.role:
            problems.append(_Invalid(f'only allowed when node.role = "{role}"', (role,)))
    known = {k: v for k, v in doc.items() if k in _keys(NodeConfig) and (k not in ROLES or k == node.role)}
    # A missing [cn] takes its defaults; a missing [lma] or [mag] names its required keys.
    try:
        config = _build(NodeConfig, {node.role: {}, **known}, path=path)
    except _Invalid as problem:
        raise _Many(problems + _each(problem)) from None
    if problems:
        raise _Many(problems)
    default_role = "lma" if node.role == "lma" else "mag"
    config = dataclasses.replace(config, peers=tuple(
        dataclasses.replace(p, role=p.role or default_role,
                            key_file=p.key_file if p.key_file.is_absolute() else path.parent / p.key_file)
        for p in config.peers))
    if config.control.socket is None:
        socket = Path(f"/run/pmip6ctl/{config.node.name}.sock")
        config = dataclasses.replace(config, control=ControlSection(socket=socket))
    if config.store.path is None:
        config = dataclasses.replace(config, store=dataclasses.replace(
            config.store, path=Path(f"/var/lib/pmip6ctl/{config.node.name}.db")))
    problems = [_Invalid(why, where) for where, why in _cross_checks(config)]
    if problems:
        raise _Many(problems)
    return config


# tomllib reports "<message> (at line 3, column 7)" or "(at end of document)".
_TOML_WHERE = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$", re.S)


def parse_config(text: str, path: str | Path) -> NodeConfig:
    """Parse one node's TOML text; `path` names it in messages and in NodeConfig.path."""
    label = str(path)
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as error:  # TOMLDecodeError, or int() over 4300 digits
        match = _TOML_WHERE.match(str(error))
        message = " ".join((match["message"] if match else str(error) or type(error).__name__).split())
        where = None
        if match:
            where = f"line {match['line']}, column {match['column']}" if match["line"] else "end of document"
        raise ConfigError(label, where, f"invalid TOML ({message})") from None
    try:
        return _from_document(doc, Path(path))
    except _Invalid as problem:
        errors = [ConfigError(label, _dotted(p.path) or None, p.why) for p in _each(problem)]
        raise _first_of(errors) from None


def _first_of(errors: list[ConfigError]) -> ConfigError:
    """The first problem, which a daemon reports; `every` holds them all."""
    errors[0].every = errors
    return errors[0]


def check_config(path: str | Path) -> tuple[NodeConfig | None, list[ConfigError]]:
    """Every problem in one node's file (`pmip6ctl config check`), not just the
    first one load_config stops at: each field that does not convert, each
    unknown key, then (when every field converted) each cross-field rule, and
    each key file that cannot be used; and the config, None if there is any."""
    try:
        return load_config(path), []
    except ConfigError as error:
        errors = error.every
    return None, errors


def differences(old: NodeConfig, new: NodeConfig) -> list[str]:
    """The keys (dotted, "lma.hnp_pool"; a whole "peers") whose values differ."""
    changed = []
    for name in _keys(NodeConfig):
        a, b = getattr(old, name), getattr(new, name)
        if name == "peers":
            if a != b or [p.key for p in a] != [p.key for p in b]:
                changed.append(name)
        elif dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            changed += [f"{name}.{key}" for key in _keys(type(a)) if getattr(a, key) != getattr(b, key)]
        elif a != b:
            changed.append(name)
    return changed


def load_config(path: str | Path) -> NodeConfig:
    """Read and check one node's configuration file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        reason = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
        raise ConfigError(str(path), None, f"cannot read: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), None, f"not UTF-8 (byte {error.start})") from None
    return read_keys(parse_config(text, path))


def _key_problems(config: NodeConfig) -> list[ConfigError]:
    errors = []
    for i, peer in enumerate(config.peers):
        try:
            read_key(peer.key_file)
        except _Invalid as problem:
            errors.append(ConfigError(str(config.path), _dotted(("peers", i, "key_file")), problem.why))
    return errors


def read_keys(config: NodeConfig) -> NodeConfig:
    """The config with each peer's key read from its key_file."""
    peers = []
    for i, peer in enumerate(config.peers):
        try:
            peers.append(dataclasses.replace(peer, key=read_key(peer.key_file)))
        except _Invalid:
            raise _first_of(_key_problems(config)) from None
    return dataclasses.replace(config, peers=tuple(peers))
