"""Issue 14: thousands of bindings at the real LMA survive kill -9.

The load generator (pmip6ctl/lab/loadgen.py) registers PMIP6_SCALE_MNS MNs
(default 5,000) through the three MAG identities, with the real signed
PBU/PBA; the LMA is killed with SIGKILL and started again; every binding
must be back in its binding cache (same HNP, same MAG) and every HNP in its
mn_table, into the tunnel to that MAG. The lab's MAGs are stopped while
their identities are borrowed, and the LMA runs with a config sized for N;
afterwards the LMA gets the lab's config and its state back, the MAGs are
started again, and MN1 reaches MN2 as before.

No timing is asserted here: speed is bench/scale.py's."""

import os
import signal

import pytest

from pmip6ctl.lab import loadgen as lg

from .conftest import ping, wait_for

pytestmark = pytest.mark.root

MNS = int(os.environ.get("PMIP6_SCALE_MNS", "5000"))
MOVES = min(100, MNS // 3)


def lab_bindings(lab) -> list[tuple]:
    return sorted((b["mn_id"], b["hnp"], b["mag"]) for b in lab.client("lma").call("bindings"))


def test_every_binding_and_map_entry_survives_kill_9_at_scale(lab):
    before = lab_bindings(lab)
    pool = lg.scale_pool(MNS)
    lg.borrow_mags(lab)
    saved = lg.stop_lma_saving_state(lab)
    try:
        lg.restart_lma(lab, lg.scale_lma_config(lab, MNS), fresh=True)
        identities = [lg.MagIdentity.of_lab(lab, mag) for mag in lg.MAGS]
        # a small window and a long timeout: the LMA may be slow here, and a
        # PBU queued past the Timestamp window (7 s) would be refused unseen
        with lg.LoadGenerator(identities, window=8, timeout=30, progress=print) as gen:
            attach = gen.attach(range(MNS))
            assert (attach.answered, attach.refused, attach.forged) == (MNS, 0, 0), attach.summary()
            assert len(gen.where) == MNS and len(gen.hnp) == MNS
            assert len({gen.prefix_of(i) for i in gen.where}) == MNS       # one prefix each
            # handovers: the LMA asks the old MAG first (BRI), our old MAG lets go
            moved = gen.move(range(MOVES))
            assert (moved.answered, moved.refused) == (MOVES, 0), moved.summary()
            assert gen.unsolicited["bri_answered_0"] == MOVES
            for i in range(MOVES):
                assert gen.where[i] == (i + 1) % len(identities)

            held = gen.check_bindings(lab.client("lma", timeout=60).call("bindings"))
            assert (held["missing"], held["extra"]) == ([], []), held
            maps = gen.check_forwarding(lab.pin_root / "lma", pool)
            assert maps == {"entries": MNS, "bindings_without_entry": 0, "wrong_tunnel": 0,
                            "entries_without_binding": 0}

            lab.stop_daemon("lma", sig=signal.SIGKILL)
            lab.start_daemon("lma")
            lab.wait_ready("lma", timeout=120)

            held = gen.check_bindings(lab.client("lma", timeout=60).call("bindings"))
            assert held["held"] == MNS and (held["missing"], held["extra"]) == ([], []), held
            maps = gen.check_forwarding(lab.pin_root / "lma", pool)
            assert maps == {"entries": MNS, "bindings_without_entry": 0, "wrong_tunnel": 0,
                            "entries_without_binding": 0}
            # and it still answers: a refresh of one, a new MN, the query of a MAG
            assert gen.probe(MNS - 1, give_up=60) is not None
            assert gen.probe(MNS, give_up=60) is not None
            lri = gen.lri_latency(20)
            assert (lri.answered, dict(lri.statuses), lri.extra["wrong_mag"]) == (20, {0: 20}, 0)

            gone = gen.detach(list(gen.where))
            assert (gone.answered, gone.refused) == (MNS + 1, 0), gone.summary()
            # a deregistered MN's prefix stays as a downlink-hold mark, with no tunnel, for
            # MinDelayBeforeBCEDelete (docs/operations.md, "Downlink hold"), then goes
            assert set(lg.forwarding(lab.pin_root / "lma", pool).values()) <= {None}
            wait_for(lambda: gen.check_forwarding(lab.pin_root / "lma", pool)["entries"] == 0, timeout=90,
                     what="the held marks to go with the deleted entries")
    finally:
        lg.restore_lma(lab, saved)
        lg.return_mags(lab)
    assert lab_bindings(lab) == before
    wait_for(lambda: ping(lab, "mn1", lab.mns["mn2"]["ipv6"], count=3) == 3, timeout=30,
             what="MN1 to reach MN2 again through the lab's own MAGs")
