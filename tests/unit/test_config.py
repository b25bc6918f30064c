"""The node configuration: examples load, every rule fails with its exact
one-line message, defaults are filled, and no input makes the loader raise
anything but ConfigError."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import tomllib
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmip6ctl.config import (
    KNOWN_KEYS,
    ConfigError,
    MnId,
    differences,
    NodeConfig,
    RoPolicyRule,
    load_config,
    parse_config,
)
from pmip6ctl import defs

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))
DELETE = object()

# --- a tiny TOML writer, so that a test states its input as a dict edit -----------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else
            {'"': '\\"', "\\": "\\\\"}.get(c, f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
            for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, float):
        return "nan" if math.isnan(value) else {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(doc: dict) -> str:
    lines = [f"{toml_value(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list))]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{toml_value(name)}]")
            lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:
                lines.append(f"[[{toml_value(name)}]]")
                lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in table.items()]
        elif isinstance(value, list):
            lines.insert(0, f"{toml_value(name)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


KEY_A = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY_B = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

BASE = {
    "lma": {
        "node": {"name": "lma", "role": "lma"},
        "interfaces": {"transport": ["eth0"]},
        "addresses": {"ipv6": "2001:db8::1"},
        "lma": {"hnp_pool": "2001:db8:8000::/48"},
    },
    "mag": {
        "node": {"name": "mag1", "role": "mag"},
        "interfaces": {"transport": ["eth0"], "access": ["eth1"]},
        "addresses": {"ipv6": "2001:db8:0:11::1"},
        "mag": {"lma": "2001:db8::1"},
        "peers": [
            {"name": "mag2", "address": "2001:db8:0:12::1", "spi": 4097, "key_file": "keys/mag1-mag2.key"},
            {"name": "cn", "role": "cn", "address": "2001:db8:ffff::10", "spi": 4098, "key_file": "keys/cn.key"},
            {"name": "lma", "role": "lma", "address": "2001:db8::1", "spi": 4100, "key_file": "/etc/keys/lma.key"},
        ],
    },
    "cn": {
        "node": {"name": "cn", "role": "cn"},
        "interfaces": {"transport": ["eth0"]},
        "addresses": {"ipv6": "2001:db8:ffff::10"},
    },
}


def edited(role: str, edits: dict) -> dict:
    """BASE[role] with {"section.key": value} edits; DELETE removes; "peers.1.spi" indexes."""
    doc = copy.deepcopy(BASE[role])
    for dotted, value in edits.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        target = doc
        for part in parents:
            target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return doc


def load(role: str, **edits) -> NodeConfig:
    return parse_config(to_toml(edited(role, {k.replace("__", "."): v for k, v in edits.items()})),
                        f"{role}.toml")


def problem(role: str, edits: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(to_toml(edited(role, edits)), f"{role}.toml")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message


# --- the examples -----------------------------------------------------------------------------


def write_key(path: Path, hex_key: str = KEY_A, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hex_key + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def examples(tmp_path) -> list[Path]:
    """The examples as an operator makes them work: copied, with a key file
    for each pair (`pmip6ctl keygen`), readable by the owner only."""
    copies = []
    for path in EXAMPLE_FILES:
        copy_path = tmp_path / path.name
        copy_path.write_text(path.read_text())
        copies.append(copy_path)
        for peer in tomllib.loads(path.read_text()).get("peers", []):
            key = tmp_path / peer["key_file"]
            if not key.exists():
                write_key(key, os_urandom_hex())
    return copies


def os_urandom_hex() -> str:
    import os
    return os.urandom(32).hex()


def test_there_are_four_examples():
    assert [f.name for f in EXAMPLE_FILES] == ["cn.toml", "lma.toml", "mag1.toml", "mag2.toml"]


def test_every_example_loads_with_its_keys(examples):
    for path in examples:
        config = load_config(path)
        assert config.path == path
        assert config.node.name == path.stem
        assert {"lma": config.lma, "mag": config.mag, "cn": config.cn}[config.node.role] is not None
        assert all(len(p.key) == 32 for p in config.peers)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_uses_only_documentation_addresses(path):
    documentation = [ip_network(n) for n in
                     ("2001:db8::/32", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    allowed_anywhere = {ip_network("::/0"), ip_network("0.0.0.0/0")}

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    for text in strings(tomllib.loads(path.read_text())):
        for candidate in (text, text.rpartition(":")[0].strip("[]")):
            try:
                network = ip_network(candidate, strict=False)
            except ValueError:
                continue
            if network in allowed_anywhere or network.is_unspecified or network.is_loopback:
                continue
            assert any(network.subnet_of(d) for d in documentation if d.version == network.version), text


def test_examples_agree_with_each_other(examples):
    configs = {c.node.name: c for c in map(load_config, examples)}
    lma = configs["lma"]
    for name in ("mag1", "mag2"):
        assert configs[name].mag.lma == lma.addresses.ipv6
        assert configs[name].addresses.ipv6 in lma.lma.allowed_mags
    # Every quick-mode pair lists the other side with the same SPI and key.
    for config in configs.values():
        for peer in config.peers:
            other = configs[peer.name]
            assert peer.address == other.addresses.ipv6 and peer.ipv4 == other.addresses.ipv4
            back = other.peer(config.addresses.ipv6)
            assert back is not None and (back.spi, back.key) == (peer.spi, peer.key)
    assert configs["mag2"].mag.transport == "ipv4"


def test_example_keys_are_all_known():
    for path in EXAMPLE_FILES:
        for section, body in tomllib.loads(path.read_text()).items():
            for table in body if isinstance(body, list) else [body]:
                assert set(table) - {"ro_policy", "mn_ids"} <= KNOWN_KEYS[section], (path, section)


def test_known_keys_lists_sections_and_nested_tables():
    assert set(KNOWN_KEYS) == {"node", "interfaces", "addresses", "lma", "lma.ro_policy", "mag", "ro",
                               "ro.policy", "peers", "security", "timers", "heartbeat", "dataplane", "metrics", "control", "store",
                               "cn"}
    assert KNOWN_KEYS["lma.ro_policy"] == {"action", "mn", "cn"}
    assert "hnp_pool" in KNOWN_KEYS["lma"] and "path" not in KNOWN_KEYS


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_are_filled_in():
    config = load("mag")
    assert config.path == Path("mag.toml")
    assert config.addresses.ipv4 is None
    assert config.lma is None and config.cn is None
    mag = config.mag
    assert (mag.lma, mag.lma_ipv4, mag.transport, mag.lifetime, mag.request_ipv4, dict(mag.mn_ids),
            mag.advertise_mtu) == (IPv6Address("2001:db8::1"), None, "ipv6", 3600, True, {}, 0)
    ro = config.ro
    assert (ro.enabled, ro.trigger_packets, ro.lifetime, ro.retry_interval, ro.mode) == \
        (True, 10, 420, 30.0, "rr")
    t = config.timers
    assert (t.initial_bindack_timeout, t.max_bindack_timeout, t.refresh_fraction) == (1.0, 32.0, 0.8)
    d = config.dataplane
    assert (d.pin_root, d.generic_mode, d.event_interval_ms, d.hop_limit) == \
        (Path("/sys/fs/bpf/pmip6"), False, 1000, 64)
    assert (d.max_mn_entries, d.max_ro_entries, d.max_tunnels, d.max_peers, d.max_flows) == \
        (65536, 65536, 4096, 4096, 65536)
    assert d.max_tunnels == defs.constants()["MAX_TUNNELS"]
    assert config.metrics.listen == ("127.0.0.1", 9436)
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9436)
    assert config.control.socket == Path("/run/pmip6ctl/mag1.sock")
    assert [p.quick_mode for p in config.peers] == [True, True, True]
    assert [p.role for p in config.peers] == ["mag", "cn", "lma"]          # a MAG's peers are MAGs unless said
    assert [p.key_file for p in config.peers] == [Path("keys/mag1-mag2.key"), Path("keys/cn.key"),
                                                  Path("/etc/keys/lma.key")]   # relative to the file's folder
    assert config.peers[0].key == b"" and config.security.auth == "hmac-sha256"    # keys: load_config reads them


def test_lma_defaults_and_typed_values():
    config = load("lma")
    lma = config.lma
    assert lma.hnp_pool == IPv6Network("2001:db8:8000::/48")
    assert (lma.hnp_length, lma.ipv4_pool, lma.max_lifetime, lma.timestamp_window, lma.allowed_mags,
            lma.ro_policy) == (64, None, 3600, 7.0, None, ())
    assert config.interfaces.access == () and config.mag is None


def test_cn_section_may_be_omitted():
    assert load("cn").cn.egress_interface == "pmip6-egress"


def test_integers_are_accepted_where_seconds_are_floats():
    config = load("mag", timers__max_bindack_timeout=16)
    assert config.timers.max_bindack_timeout == 16.0
    assert isinstance(config.timers.max_bindack_timeout, float)


def test_zero_turns_off_what_the_docs_say_it_turns_off():
    config = load("mag", security__answer_rate=0, heartbeat__interval=0, heartbeat__ro_interval=0)
    assert (config.security.answer_rate, config.heartbeat.interval, config.heartbeat.ro_interval) == (0, 0, 0)
    assert load("mag", heartbeat__interval=0.1).heartbeat.interval == 0.1      # the bounds are inclusive
    assert load("mag", heartbeat__interval=86400).heartbeat.interval == 86400


def test_config_is_frozen_and_hides_keys_from_repr():
    config = load("mag")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.node = None
    assert KEY_A not in repr(config)
    assert hash(config) == hash(load("mag"))


def test_mn_ids_are_normalised_and_bound_to_links():
    config = load("mag", mag__mn_ids={"02:00:00:00:01:AA": "mn1@example.net",
                                      "02:00:00:00:01:CC": {"nai": "mn2@example.net", "links": ["eth1"]}})
    assert dict(config.mag.mn_ids) == {"02:00:00:00:01:aa": MnId("mn1@example.net"),
                                       "02:00:00:00:01:cc": MnId("mn2@example.net", ("eth1",))}
    assert config.mn_id("02:00:00:00:01:aa") == "mn1@example.net"
    assert config.mn_id("02:00:00:00:01:BB") is None          # nobody else: an RS is not an identity


def test_ro_policy_first_match_wins_and_default_allows():
    config = load("lma", lma__ro_policy=[
        {"action": "allow", "mn": "2001:db8:8000:1::/64", "cn": "::/0"},
        {"action": "deny", "mn": "2001:db8:8000::/48", "cn": "2001:db8:ffff::/48"},
        {"action": "deny", "mn": "0.0.0.0/0", "cn": "203.0.113.0/24"},
    ])
    lma = config.lma
    assert lma.ro_policy[2] == RoPolicyRule(action="deny", mn=IPv4Network("0.0.0.0/0"),
                                            cn=IPv4Network("203.0.113.0/24"))
    assert lma.ro_allowed(ip_address("2001:db8:8000:1::5"), ip_address("2001:db8:ffff::10"))
    assert not lma.ro_allowed(ip_address("2001:db8:8000:2::5"), ip_address("2001:db8:ffff::10"))
    assert lma.ro_allowed(ip_address("2001:db8:8000:2::5"), ip_address("2001:db8:eeee::10"))
    assert not lma.ro_allowed(IPv4Address("192.0.2.7"), IPv4Address("203.0.113.9"))
    # An IPv6 rule never matches an IPv4 pair, not even ::/0.
    only_v6 = load("lma", lma__ro_policy=[{"action": "deny", "mn": "::/0", "cn": "::/0"}]).lma
    assert only_v6.ro_allowed(IPv4Address("192.0.2.7"), IPv4Address("203.0.113.9"))


def test_metrics_listen_forms():
    assert load("cn", metrics__listen="[::1]:9000").metrics.listen == ("::1", 9000)
    assert load("cn", metrics__listen="localhost:1").metrics.listen == ("localhost", 1)
    assert load("cn", metrics__listen="0.0.0.0:65535", metrics__expose=True).metrics.listen == ("0.0.0.0", 65535)


def test_metrics_stay_on_loopback_or_a_management_address_unless_exposed():
    assert load("lma").metrics.expose is False
    for listen in ("127.0.0.1:9436", "[::1]:9436", "localhost:9436", "10.1.2.3:9436", "[fd00:1::5]:9436",
                   "192.0.2.1:9436", "[2001:db8:eeee::3]:9436"):
        assert load("mag", metrics__listen=listen).metrics.expose is False, listen
    for listen in ("[::]:9436", "0.0.0.0:9436", "8.8.8.8:9436", "[2a00:1450::1]:9436"):
        assert load("mag", metrics__listen=listen, metrics__expose=True).metrics.expose is True


def test_quick_mode_allows_a_longer_ro_lifetime():
    assert load("mag", ro__mode="quick", ro__lifetime=3600).ro.lifetime == 3600


# --- every rule, with its exact message -------------------------------------------------------

IFNAME = "a valid interface name (1-15 ASCII characters, no '/', ':' or whitespace)"
NAME = "a valid name ([a-z0-9-], 1-32 characters)"
UNICAST = "a routable unicast address is needed"

CASES = [
    # file structure
    ("lma", {"node": DELETE}, "node: required"),
    ("lma", {"nodes": {"x": 1}}, "nodes: unknown key (did you mean node?)"),
    ("lma", {"ro": 5}, "ro: 5 is not a table"),
    ("lma", {"lma.hnp_pol": "2001:db8::/48"}, "lma.hnp_pol: unknown key (did you mean hnp_pool?)"),
    ("lma", {"lma.zzzzzz": 1}, "lma.zzzzzz: unknown key"),
    ("lma", {"lma": DELETE}, "lma.hnp_pool: required"),
    ("mag", {"mag": DELETE}, "mag.lma: required"),
    ("mag", {"lma": {"hnp_pool": "2001:db8::/48"}}, 'lma: only allowed when node.role = "lma"'),
    ("lma", {"cn": {}}, 'cn: only allowed when node.role = "cn"'),
    ("cn", {"mag": {"lma": "2001:db8::1"}}, 'mag: only allowed when node.role = "mag"'),
    # [node]
    ("mag", {"node.role": "lma2"}, "node.role: 'lma2' is not one of lma, mag, cn"),
    ("mag", {"node.role": DELETE}, "node.role: required"),
    ("mag", {"node.name": "Mag_1"}, f"node.name: 'Mag_1' is not {NAME}"),
    ("mag", {"node.name": "m" * 33}, f"node.name: '{'m' * 33}' is not {NAME}"),
    ("mag", {"node.name": 7}, "node.name: 7 is not a string"),
    # [interfaces]
    ("lma", {"interfaces.transport": []}, "interfaces.transport: needs at least 1 entry"),
    ("lma", {"interfaces.transport": "eth0"}, "interfaces.transport: 'eth0' is not a list"),
    ("lma", {"interfaces.transport": ["eth0", "eth/1"]}, f"interfaces.transport[1]: 'eth/1' is not {IFNAME}"),
    ("lma", {"interfaces.transport": ["eth 0"]}, f"interfaces.transport[0]: 'eth 0' is not {IFNAME}"),
    ("lma", {"interfaces.transport": ["a" * 16]}, f"interfaces.transport[0]: '{'a' * 16}' is not {IFNAME}"),
    ("lma", {"interfaces.transport": [".."]}, f"interfaces.transport[0]: '..' is not {IFNAME}"),
    ("lma", {"interfaces.transport": [""]}, f"interfaces.transport[0]: '' is not {IFNAME}"),
    ("lma", {"interfaces.transport": ["eth0", "eth0"]}, "interfaces.transport[1]: 'eth0' is listed twice"),
    ("lma", {"interfaces.transport": DELETE}, "interfaces.transport: required"),
    ("mag", {"interfaces.access": DELETE}, 'interfaces.access: required when node.role = "mag"'),
    ("mag", {"interfaces.access": []}, 'interfaces.access: required when node.role = "mag"'),
    ("lma", {"interfaces.access": ["eth1"]}, 'interfaces.access: only allowed when node.role = "mag"'),
    ("mag", {"interfaces.access": ["eth0"]}, "interfaces.access[0]: 'eth0' is also a transport interface"),
    # [addresses]
    ("lma", {"addresses.ipv6": "2001:db8::g"}, "addresses.ipv6: '2001:db8::g' is not an IPv6 address"),
    ("lma", {"addresses.ipv6": "192.0.2.1"}, "addresses.ipv6: '192.0.2.1' is not an IPv6 address"),
    ("lma", {"addresses.ipv6": "fe80::1"}, f"addresses.ipv6: 'fe80::1' is link-local; {UNICAST}"),
    ("lma", {"addresses.ipv6": "::"}, f"addresses.ipv6: '::' is unspecified; {UNICAST}"),
    ("lma", {"addresses.ipv6": "ff02::1"}, f"addresses.ipv6: 'ff02::1' is multicast; {UNICAST}"),
    ("lma", {"addresses.ipv6": DELETE}, "addresses.ipv6: required"),
    ("lma", {"addresses.ipv4": "198.51.100.300"}, "addresses.ipv4: '198.51.100.300' is not an IPv4 address"),
    ("lma", {"addresses.ipv4": "127.0.0.1"}, f"addresses.ipv4: '127.0.0.1' is loopback; {UNICAST}"),
    # [lma]
    ("lma", {"lma.hnp_pool": "2001:db8::/200"}, "lma.hnp_pool: '2001:db8::/200' is not an IPv6 prefix"),
    ("lma", {"lma.hnp_pool": "192.0.2.0/24"}, "lma.hnp_pool: '192.0.2.0/24' is not an IPv6 prefix"),
    ("lma", {"lma.hnp_pool": "2001:db8::1/48"},
     "lma.hnp_pool: '2001:db8::1/48' is not an IPv6 prefix (host bits set; did you mean 2001:db8::/48?)"),
    ("lma", {"lma.hnp_length": 65}, "lma.hnp_length: 65 is not in 1..64"),
    ("lma", {"lma.hnp_length": 40}, "lma.hnp_length: 40 is shorter than lma.hnp_pool (/48)"),
    ("lma", {"lma.hnp_length": "64"}, "lma.hnp_length: '64' is not an integer"),
    ("lma", {"lma.hnp_length": 64.0}, "lma.hnp_length: 64.0 is not an integer"),
    ("lma", {"lma.hnp_length": True}, "lma.hnp_length: true is not an integer"),
    ("lma", {"lma.ipv4_pool": "2001:db8::/64"}, "lma.ipv4_pool: '2001:db8::/64' is not an IPv4 prefix"),
    ("lma", {"lma.max_lifetime": 3}, "lma.max_lifetime: 3 is not in 4..262140"),
    ("lma", {"lma.max_lifetime": 262141}, "lma.max_lifetime: 262141 is not in 4..262140"),
    ("lma", {"lma.timestamp_window": 0}, "lma.timestamp_window: 0 is not > 0"),
    ("lma", {"lma.timestamp_window": -1.5}, "lma.timestamp_window: -1.5 is not > 0"),
    ("lma", {"lma.timestamp_window": math.nan}, "lma.timestamp_window: nan is not a finite number"),
    ("lma", {"lma.timestamp_window": math.inf}, "lma.timestamp_window: inf is not a finite number"),
    ("lma", {"lma.timestamp_window": "7s"}, "lma.timestamp_window: '7s' is not a number"),
    ("lma", {"lma.allowed_mags": []}, "lma.allowed_mags: needs at least 1 entry"),
    ("lma", {"lma.allowed_mags": ["2001:db8::11", "fe80::1"]},
     f"lma.allowed_mags[1]: 'fe80::1' is link-local; {UNICAST}"),
    ("lma", {"lma.ro_policy": [{"action": "permit", "mn": "::/0", "cn": "::/0"}]},
     "lma.ro_policy[0].action: 'permit' is not one of allow, deny"),
    ("lma", {"lma.ro_policy": [{"action": "deny", "mn": "::/0"}]}, "lma.ro_policy[0].cn: required"),
    ("lma", {"lma.ro_policy": [{"action": "deny", "mn": "2001:db8::/300", "cn": "::/0"}]},
     "lma.ro_policy[0].mn: '2001:db8::/300' is not an IPv6 or IPv4 prefix"),
    ("lma", {"lma.ro_policy": [{"action": "deny", "mn": "::/0", "cn": "192.0.2.0/24"}]},
     "lma.ro_policy[0].cn: '192.0.2.0/24' is IPv4 but mn is IPv6"),
    ("lma", {"lma.ro_policy": [{"acton": "deny", "mn": "::/0", "cn": "::/0"}]},
     "lma.ro_policy[0].acton: unknown key (did you mean action?)"),
    ("lma", {"lma.ro_policy": [5]}, "lma.ro_policy[0]: 5 is not a table"),
    # [mag]
    ("mag", {"mag.transport": "ipv4", "addresses.ipv4": "198.51.100.11"},
     'mag.lma_ipv4: required when mag.transport = "ipv4"'),
    ("mag", {"mag.transport": "ipv4", "mag.lma_ipv4": "198.51.100.1"},
     'addresses.ipv4: required when mag.transport = "ipv4"'),
    ("mag", {"mag.transport": "udp"}, "mag.transport: 'udp' is not one of ipv6, ipv4"),
    ("mag", {"mag.access_mac": "03:00:00:00:00:01"},
     "mag.access_mac: '03:00:00:00:00:01' is not a unicast MAC address (aa:bb:cc:dd:ee:ff, first octet even) or \"\""),
    ("mag", {"mag.buffer_packets": 0}, "mag.buffer_packets: 0 is not in 1..1000000"),
    ("mag", {"mag.buffer_seconds": 0}, "mag.buffer_seconds: 0 is not in 0.01..60 seconds"),
    ("mag", {"mag.buffer_uplink": 1}, "mag.buffer_uplink: 1 is not a boolean (true or false)"),
    ("lma", {"lma.hold_packets": 0}, "lma.hold_packets: 0 is not in 1..1000000"),
    ("lma", {"lma.hold_total": 0}, "lma.hold_total: 0 is not in 1..10000000"),
    ("lma", {"lma.hold_seconds": 0}, "lma.hold_seconds: 0 is not in 0.01..60 seconds"),
    ("lma", {"lma.hold_release_delay": 2}, "lma.hold_release_delay: 2 is not in 0..1 seconds"),
    ("lma", {"lma.hold_downlink": 1}, "lma.hold_downlink: 1 is not a boolean (true or false)"),
    ("mag", {"mag.lma": "2001:db8::1/64"}, "mag.lma: '2001:db8::1/64' is not an IPv6 address"),
    ("mag", {"mag.lifetime": 0}, "mag.lifetime: 0 is not in 4..262140"),
    ("mag", {"mag.request_ipv4": "yes"}, "mag.request_ipv4: 'yes' is not a boolean (true or false)"),
    ("mag", {"mag.mn_ids": "x"}, "mag.mn_ids: 'x' is not a table"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": {"nai": "a@x", "links": ["eth9"]}}},
     "mag.mn_ids.\"aa:bb:cc:dd:ee:ff\".links[0]: 'eth9' is not one of interfaces.access"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": {"links": ["eth1"]}}},
     "mag.mn_ids.\"aa:bb:cc:dd:ee:ff\".nai: required"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": {"nai": "a@x", "link": ["eth1"]}}},
     "mag.mn_ids.\"aa:bb:cc:dd:ee:ff\".link: unknown key"),
    ("mag", {"mag.mn_ids": {"aa:bb": "mn1@example.net"}},
     "mag.mn_ids: 'aa:bb' is not a MAC address (aa:bb:cc:dd:ee:ff)"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": "has space"}},
     "mag.mn_ids.\"aa:bb:cc:dd:ee:ff\": 'has space' is not an NAI (1-254 octets, no whitespace)"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": "é" * 128}},
     f"mag.mn_ids.\"aa:bb:cc:dd:ee:ff\": '{'é' * 56}... is not an NAI (1-254 octets, no whitespace)"),
    ("mag", {"mag.mn_ids": {"aa:bb:cc:dd:ee:ff": "a@x", "AA:BB:CC:DD:EE:FF": "b@x"}},
     "mag.mn_ids: 'AA:BB:CC:DD:EE:FF' is listed twice"),
    ("mag", {"mag.advertise_mtu": 1000}, "mag.advertise_mtu: 1000 is not 0 or in 1280..65535"),
    # [ro]
    ("mag", {"ro.enabled": 1}, "ro.enabled: 1 is not a boolean (true or false)"),
    ("mag", {"ro.trigger_packets": -1}, "ro.trigger_packets: -1 is not in 0..4294967295"),
    ("mag", {"ro.lifetime": 421},
     'ro.lifetime: 421 exceeds MAX_RR_BINDING_LIFETIME (420) with ro.mode = "rr"'),
    ("mag", {"ro.retry_interval": 0.0}, "ro.retry_interval: 0.0 is not > 0"),
    ("mag", {"ro.mode": "fast"}, "ro.mode: 'fast' is not one of rr, quick"),
    # [[peers]]
    ("mag", {"peers.0.spi": 255},
     "peers[0].spi: 255 is not in 256..4294967295 (SPIs 0-255 are reserved by RFC 4285)"),
    ("mag", {"peers.1.spi": 2**32},
     "peers[1].spi: 4294967296 is not in 256..4294967295 (SPIs 0-255 are reserved by RFC 4285)"),
    ("mag", {"peers.0.key": KEY_A}, "peers[0].key: unknown key"),
    ("mag", {"peers.0.key_file": DELETE}, "peers[0].key_file: required"),
    ("mag", {"peers.0.key_file": 1234}, "peers[0].key_file: 1234 is not a string"),
    ("mag", {"peers.0.role": "ha"}, "peers[0].role: 'ha' is not one of lma, mag, cn"),
    ("mag", {"peers.1.kye": KEY_B}, "peers[1].kye: unknown key"),
    ("mag", {"peers.2.role": "mag"},
     'peers: no entry with role = "lma" and address = "2001:db8::1" (mag.lma): give the LMA\'s key, '
     'or set security.auth = "none"'),
    ("mag", {"security.auth": "md5"}, "security.auth: 'md5' is not one of hmac-sha256, none"),
    ("mag", {"peers.1.name": "mag2"}, "peers[1].name: 'mag2' is already used by peers[0]"),
    ("mag", {"peers.1.spi": 4097}, "peers[1].spi: 4097 is already used by peers[0]"),
    ("mag", {"peers.1.address": "2001:db8:0:12::1"},
     "peers[1].address: '2001:db8:0:12::1' is already used by peers[0]"),
    ("mag", {"peers.0.name": "MAG 2"}, f"peers[0].name: 'MAG 2' is not {NAME}"),
    ("mag", {"peers.0.quick_mode": "no"}, "peers[0].quick_mode: 'no' is not a boolean (true or false)"),
    ("mag", {"peers": {"name": "x", "key_file": "k"}}, "peers: {...} is not a list"),
    # [timers]
    ("mag", {"timers.initial_bindack_timeout": 2.0, "timers.max_bindack_timeout": 1.5},
     "timers.max_bindack_timeout: 1.5 is less than timers.initial_bindack_timeout (2)"),
    ("mag", {"timers.refresh_fraction": 1.0}, "timers.refresh_fraction: 1.0 is not in (0, 1)"),
    ("mag", {"timers.refresh_fraction": 0}, "timers.refresh_fraction: 0 is not in (0, 1)"),
    ("mag", {"timers.initial_bindack_timeout": -1}, "timers.initial_bindack_timeout: -1 is not > 0"),
    # [dataplane]
    ("mag", {"dataplane.pin_root": "bpf/pmip6"}, "dataplane.pin_root: 'bpf/pmip6' is not an absolute path"),
    ("mag", {"dataplane.generic_mode": 0}, "dataplane.generic_mode: 0 is not a boolean (true or false)"),
    ("mag", {"dataplane.max_flows": 0}, "dataplane.max_flows: 0 is not in 1..4294967295"),
    # bounded tables (issue 13)
    ("mag", {"ro.max_remembered_failures": 0}, "ro.max_remembered_failures: 0 is not in 1..4294967295"),
    ("cn", {"ro.max_replay_entries": -1}, "ro.max_replay_entries: -1 is not in 1..4294967295"),
    ("lma", {"lma.max_cached_answers": 0}, "lma.max_cached_answers: 0 is not in 1..4294967295"),
    ("mag", {"security.answer_prefixes": 0}, "security.answer_prefixes: 0 is not in 1..4294967295"),
    ("mag", {"dataplane.hop_limit": 256}, "dataplane.hop_limit: 256 is not in 1..255"),
    ("mag", {"dataplane.hop_limit": 0}, "dataplane.hop_limit: 0 is not in 1..255"),
    ("mag", {"dataplane.event_interval_ms": 0}, "dataplane.event_interval_ms: 0 is not in 1..60000"),
    # [heartbeat]
    ("mag", {"heartbeat.interval": 0.05}, "heartbeat.interval: 0.05 is not 0 (off) or in 0.1..86400 seconds"),
    ("mag", {"security.answer_rate": -1}, "security.answer_rate: -1 is not 0 (off) or > 0"),
    ("lma", {"heartbeat.interval": -1}, "heartbeat.interval: -1 is not 0 (off) or in 0.1..86400 seconds"),
    ("mag", {"heartbeat.ro_interval": math.inf},
     "heartbeat.ro_interval: inf is not 0 (off) or in 0.1..86400 seconds"),
    ("cn", {"heartbeat.ro_interval": "10s"}, "heartbeat.ro_interval: '10s' is not a number"),
    ("mag", {"heartbeat.missed": 0}, "heartbeat.missed: 0 is not in 1..255"),
    ("lma", {"heartbeat.ro_missed": 256}, "heartbeat.ro_missed: 256 is not in 1..255"),
    ("mag", {"heartbeat.timeout": 3}, "heartbeat.timeout: unknown key"),
    # [metrics]
    ("cn", {"metrics.listen": "localhost"}, "metrics.listen: 'localhost' is not host:port or [ipv6]:port"),
    ("cn", {"metrics.listen": "::1:9436"}, "metrics.listen: '::1:9436' is not host:port or [ipv6]:port"),
    ("cn", {"metrics.listen": "example.org:80"},
     "metrics.listen: 'example.org:80': the host must be an IP address or localhost"),
    ("cn", {"metrics.listen": "[127.0.0.1]:80"},
     "metrics.listen: '[127.0.0.1]:80': the host must be an IP address or localhost"),
    ("cn", {"metrics.listen": "127.0.0.1:0"}, "metrics.listen: '127.0.0.1:0': port 0 is not in 1..65535"),
    ("cn", {"metrics.listen": "[::1]:65536"}, "metrics.listen: '[::1]:65536': port 65536 is not in 1..65535"),
    ("lma", {"metrics.listen": "[::]:9436"}, "metrics.listen: :: listens on every address, the MN side and the "
     "Internet included: give a loopback or management address, or set metrics.expose = true"),
    ("mag", {"metrics.listen": "0.0.0.0:9436"}, "metrics.listen: 0.0.0.0 listens on every address, the MN side "
     "and the Internet included: give a loopback or management address, or set metrics.expose = true"),
    ("cn", {"metrics.listen": "[2a00:1450::1]:9436"}, "metrics.listen: 2a00:1450::1 is a public address: give a "
     "loopback or management address, or set metrics.expose = true"),
    ("cn", {"metrics.expose": "yes"}, "metrics.expose: 'yes' is not a boolean (true or false)"),
    # [control]
    ("cn", {"control.socket": "cn.sock"}, "control.socket: 'cn.sock' is not an absolute path"),
    # [cn]
    ("cn", {"cn.egress_interface": "eth0"}, "cn.egress_interface: 'eth0' is also a transport interface"),
    ("cn", {"cn.egress_interface": "pmip6-egress-veth"},
     f"cn.egress_interface: 'pmip6-egress-veth' is not {IFNAME}"),
]


@pytest.mark.parametrize(("role", "edits", "expected"), CASES,
                         ids=[f"{i}-{case[2].split(':')[0]}" for i, case in enumerate(CASES)])
def test_rule_reports_one_exact_line(role, edits, expected):
    assert problem(role, edits) == f"{role}.toml: {expected}"


def test_key_material_is_never_echoed(tmp_path):
    for text in (KEY_A[:30], "zz" + KEY_A[2:], KEY_A + "z"):
        write_key(tmp_path / "k.key", text)
        with pytest.raises(ConfigError) as caught:
            load_config(config_with_key(tmp_path, "k.key"))
        assert text not in str(caught.value) and KEY_A[2:20] not in str(caught.value)


def config_with_key(folder: Path, key_file: str, auth: str = "hmac-sha256") -> Path:
    doc = edited("mag", {"peers.2.key_file": key_file, "peers.0.key_file": key_file, "peers.1.key_file": key_file,
                         "security.auth": auth})
    path = folder / "mag1.toml"
    path.write_text(to_toml(doc))
    return path


@pytest.mark.parametrize("setup, expected", [
    (lambda d: None, "peers[0].key_file: {d}/k.key does not exist (make one with `pmip6ctl keygen {d}/k.key`)"),
    (lambda d: write_key(d / "k.key", mode=0o640),
     "peers[0].key_file: {d}/k.key is readable by group or others (mode 0640): chmod 600 it"),
    (lambda d: write_key(d / "k.key", mode=0o604),
     "peers[0].key_file: {d}/k.key is readable by group or others (mode 0604): chmod 600 it"),
    (lambda d: write_key(d / "k.key", KEY_A[:30]), "peers[0].key_file: {d}/k.key holds 15 octets; at least 16 are needed"),
    (lambda d: write_key(d / "k.key", "not hex"), "peers[0].key_file: {d}/k.key does not hold a hex key (content not shown)"),
], ids=["missing", "group", "others", "short", "not hex"])
def test_a_key_file_is_checked_in_one_line(tmp_path, setup, expected):
    setup(tmp_path)
    path = config_with_key(tmp_path, "k.key")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: " + expected.format(d=tmp_path)


def test_keys_come_from_their_files_relative_to_the_config(tmp_path):
    write_key(tmp_path / "keys" / "k.key", KEY_B)
    config = load_config(config_with_key(tmp_path, "keys/k.key"))
    assert {p.key for p in config.peers} == {bytes.fromhex(KEY_B)}
    assert config.peer(IPv6Address("2001:db8::1")).role == "lma" and config.authenticated


def test_config_error_carries_its_parts():
    with pytest.raises(ValueError) as caught:
        parse_config(to_toml(edited("lma", {"lma.hnp_length": 65})), "/etc/pmip6ctl/lma.toml")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert (error.file, error.field, error.reason) == ("/etc/pmip6ctl/lma.toml", "lma.hnp_length",
                                                       "65 is not in 1..64")


# --- file-level problems ----------------------------------------------------------------------


def test_invalid_toml_names_line_and_column():
    with pytest.raises(ConfigError) as caught:
        parse_config('[node]\nname = \n', "x.toml")
    assert str(caught.value) == "x.toml: line 2, column 8: invalid TOML (Invalid value)"


def test_invalid_toml_at_end_of_document():
    with pytest.raises(ConfigError) as caught:
        parse_config("a = [1,", "x.toml")
    assert str(caught.value) == "x.toml: end of document: invalid TOML (Invalid value)"


def test_duplicate_key_is_invalid_toml():
    with pytest.raises(ConfigError) as caught:
        parse_config('[node]\nname = "a"\nname = "b"\n', "x.toml")
    assert str(caught.value) == "x.toml: line 3, column 11: invalid TOML (Cannot overwrite a value)"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read: [Errno 2] No such file or directory"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read: [Errno 21] Is a directory"


def test_not_utf8(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b'[node]\nname = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not UTF-8 (byte 15)"


def test_file_name_is_reported_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("lma.toml").write_text(to_toml(edited("lma", {"lma.hnp_pool": "2001:db8::/200"})))
    with pytest.raises(ConfigError) as caught:
        load_config("lma.toml")
    assert str(caught.value) == "lma.toml: lma.hnp_pool: '2001:db8::/200' is not an IPv6 prefix"


# --- no input raises anything but ConfigError -------------------------------------------------

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.sampled_from(["", "eth0", "2001:db8::1", "192.0.2.1", "2001:db8::/48", "ipv4", "quick", "lma",
                     "mag", "cn", "/x", "127.0.0.1:1", KEY_A]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def leaves(doc, prefix=()):
    for name, value in doc.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, name))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, table in enumerate(value):
                yield from leaves(table, (*prefix, name, i))
        else:
            yield (*prefix, name)


def loads_or_config_error(text: str, label: str) -> None:
    try:
        parse_config(text, label)
    except ConfigError as error:
        message = str(error)
        assert len(message.splitlines()) == 1 and message.startswith(f"{label}: ")
        assert KEY_A not in message


def example_doc(index: int) -> dict:
    return tomllib.loads(EXAMPLE_FILES[index].read_text())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), index=st.integers(0, len(EXAMPLE_FILES) - 1))
def test_mutated_example_raises_only_config_error(data, index):
    doc = example_doc(index)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = sorted(leaves(doc), key=str)
        if not paths:
            break
        *parents, last = data.draw(st.sampled_from(paths))
        target = doc
        for part in parents:
            target = target[part]
        if data.draw(st.booleans()):
            del target[last]
        else:
            target[last] = data.draw(values)
    loads_or_config_error(to_toml(doc), EXAMPLE_FILES[index].name)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), index=st.integers(0, len(EXAMPLE_FILES) - 1))
def test_example_with_lines_removed_or_garbled_raises_only_config_error(data, index):
    lines = EXAMPLE_FILES[index].read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()):
            del lines[i]
        else:
            lines[i] = data.draw(st.text(max_size=30))
        if not lines:
            break
    loads_or_config_error("\n".join(lines), "x.toml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_config_error(text):
    loads_or_config_error(text, "x.toml")


def test_differences_name_what_a_reload_would_change(tmp_path):
    """What `pmip6ctl reload` reports: a rotated key file counts as a change
    of peers (the key itself is compared, never shown)."""
    write_key(tmp_path / "k.key", KEY_A)
    before = load_config(config_with_key(tmp_path, "k.key"))
    assert differences(before, before) == []
    write_key(tmp_path / "k.key", KEY_B)
    assert differences(before, load_config(before.path)) == ["peers"]
    after = load("mag", security__key_grace=60, mag__lifetime=600)
    assert differences(load("mag"), after) == ["mag.lifetime", "security.key_grace"]


def test_a_reload_takes_peers_and_mn_ids_but_not_the_lma_or_auth():
    """What Daemon.reload applies (RELOADABLE); a new mag.lma or auth waits for a
    restart, and the guard keeps talking to the LMA in use."""
    from pmip6ctl.daemon.base import node_keys, reloaded
    running = load("mag")
    new_lma = {"name": "lma2", "role": "lma", "address": "2001:db8::2", "spi": 4101, "key_file": "/etc/keys/l2.key"}
    new = load("mag", mag__lma="2001:db8::2", security__auth="none", security__key_grace=60,
               mag__mn_ids={"02:00:00:00:00:09": "mn9@example.net"},
               peers=[*BASE["mag"]["peers"], new_lma])
    applied = reloaded(running, new)
    assert differences(running, new) == ["mag.lma", "mag.mn_ids", "peers", "security.auth", "security.key_grace"]
    assert differences(running, applied) == ["mag.mn_ids", "peers", "security.key_grace"]
    assert list(node_keys(applied).signaling) == [IPv6Address("2001:db8::1")]      # still the LMA in use
    assert IPv6Address("2001:db8::2") not in node_keys(applied).quick_mode           # an LMA is no RO peer


def test_local_routing_is_on_by_default_and_a_reload_takes_the_lmas_switch():
    """[lma] local_routing (the LMA's consent, RFC 6705) reloads; the rest of [lma] waits."""
    from pmip6ctl.daemon.base import reloaded
    from pmip6ctl.daemon.lma import local_routing_policy
    running = load("lma")
    assert running.lma.local_routing and load("mag").ro.local_routing
    assert local_routing_policy(running)(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"))
    new = load("lma", lma__local_routing=False, lma__max_lifetime=600)
    applied = reloaded(running, new)
    assert sorted(differences(running, new)) == ["lma.local_routing", "lma.max_lifetime"]
    assert differences(running, applied) == ["lma.local_routing"]
    assert not local_routing_policy(applied)(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"))
    assert not load("mag", ro__local_routing=False).ro.local_routing


def test_local_routing_must_be_a_boolean():
    with pytest.raises(ConfigError, match="lma.local_routing"):
        load("lma", lma__local_routing="yes")
