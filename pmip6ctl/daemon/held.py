"""Held packets, the I/O side: the MAG's handover buffer and the LMA's
downlink hold (protocol/handover.py) return the same actions; this counts
them (metrics and the status of `pmip6ctl mn buffer` / `mn hold`) and sends
a release into its tunnel, in order."""

from __future__ import annotations

import logging

from ..protocol import handover

log = logging.getLogger("pmip6ctl.held")


class HeldPackets:
    def __init__(self, daemon, what: str, held, released, dropped, quiet: tuple = ()):
        """what: the log's name for it; held, released, dropped: the daemon's
        counters (dropped by reason); quiet: drop reasons not logged (a
        stranger's packets, say)."""
        self.daemon, self.what, self.quiet = daemon, what, quiet
        self.held, self.released, self.dropped = held, released, dropped
        self.counts = {"held": 0, "released": 0, "dropped": {}}

    def apply(self, action) -> bool:
        """Carry out or count one action; False when it is none of ours."""
        if isinstance(action, handover.ReleaseHeld):
            self.release(action)
        elif isinstance(action, handover.PacketsHeld):
            self.held.labels(self.daemon.node_name).inc(action.count)
            self.counts["held"] += action.count
        elif isinstance(action, handover.HeldDropped):
            self.drop(action.reason.value, action.count)
            if action.reason not in self.quiet:
                log.info("%s: %d packets of %s dropped: %s", self.what, action.count, action.mn_id or "?",
                         action.reason.text)
        else:
            return False
        return True

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped.labels(self.daemon.node_name, reason).inc(count)
        self.counts["dropped"][reason] = self.counts["dropped"].get(reason, 0) + count

    def release(self, action: handover.ReleaseHeld) -> None:
        sent = 0
        for packet in action.packets:
            try:
                self.daemon.tunnel_sender.send(action.tunnel, packet)
                sent += 1
            except OSError as exc:
                self.drop("send_failed")
                log.warning("%s: releasing a held packet of %s failed: %s", self.what, action.mn_id, exc)
        self.released.labels(self.daemon.node_name).inc(sent)
        self.counts["released"] += sent
        log.info("%s: %d packets of %s released", self.what, sent, action.mn_id)
