"""One definition for every number C and Python share (bpf/constants.h,
read by pmip6ctl.defs), and the record layouts checked on both sides."""

import io
import re
import tokenize
from pathlib import Path

import pytest

from pmip6ctl import defs, transport
from pmip6ctl.dataplane import loader
from pmip6ctl.security import MAX_RR_BINDING_LIFETIME
from pmip6ctl.wire.checksum import IPPROTO_MH

PACKAGE = Path(__file__).resolve().parents[2] / "pmip6ctl"


def numbers_in(path: Path) -> list[tuple[int, str]]:
    """(line, literal) of every number in the code of a file (not in its comments or strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(tok.start[0], tok.string) for tok in tokens if tok.type == tokenize.NUMBER]


@pytest.mark.parametrize("literal, owner", [
    ("5436", None),                         # PMIP6_UDP_PORT: bpf/constants.h only
    ("420", "security.py"),                 # MAX_RR_BINDING_LIFETIME
])
def test_no_python_module_keeps_its_own_copy(literal, owner):
    copies = [f"{path.relative_to(PACKAGE)}:{line}" for path in PACKAGE.rglob("*.py") if path.name != owner
              for line, number in numbers_in(path) if number == literal]
    assert copies == []


def test_the_numbers_come_from_the_c_header():
    header = (defs.bpf_dir() / "constants.h").read_text()
    assert re.search(r"#define PMIP6_UDP_PORT\s+5436\b", header) and transport.PMIP6_UDP_PORT == 5436
    assert re.search(r"#define IPPROTO_MH\s+135\b", header) and IPPROTO_MH == transport.IPPROTO_MH == 135
    assert (transport.Encap.IP6.outer_len, transport.Encap.IP4.outer_len, transport.Encap.UDP4.outer_len) == (
        40, 20, 28)
    assert MAX_RR_BINDING_LIFETIME == 420          # RFC 6275 §12


def test_event_records_have_the_sizes_the_header_states():
    sizes = defs.constants()
    assert (sizes["SIZEOF_EVENT_HEADER"], sizes["SIZEOF_FLOW_EVENT"]) == (4 * 4, 4 * 4 + 3 * 16 + 8)
    loader.check_event_layouts()
    events_h = (defs.bpf_dir() / "events.h").read_text()
    assert "sizeof(struct flow_event) == SIZEOF_FLOW_EVENT" in events_h      # and C checks its side


def test_a_layout_out_of_step_fails_loudly(monkeypatch):
    real = defs.constants()
    monkeypatch.setattr(defs, "constants", lambda: {**real, "SIZEOF_FLOW_EVENT": 80})
    with pytest.raises(loader.DataplaneError, match="SIZEOF_FLOW_EVENT is 72 here, 80 there"):
        loader.check_event_layouts()


def test_counter_keys_follow_the_layout_stats_h_writes():
    stats_h = (defs.bpf_dir() / "stats.h").read_text()
    assert "#define STATS_KEY(prog, reason)     ((prog) * REASON_COUNT + (reason))" in stats_h
    assert "#define EVENT_STATS_KEY(prog, kind) ((prog) * EVENT_KIND_COUNT + (kind))" in stats_h
    reasons = len(defs.reasons())
    assert [defs.stats_key(p, r) for p, r in ((0, 0), (0, 1), (1, 0), (2, 3))] == [0, 1, reasons, 2 * reasons + 3]
    kinds = defs.constants()["EVENT_KIND_COUNT"]
    assert defs.event_stats_key(3, 2) == 3 * kinds + 2
