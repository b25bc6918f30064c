"""What the LMA, MAG and CN-agent daemons share: the asyncio loop, the data
plane, the signaling sockets, timers, the control socket, metrics, and
state that survives a restart.

A role subclass provides the protocol core glue: what to attach where,
how to turn the core's actions into map and route changes, and its control
commands. The core itself never sees a socket."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from .. import statefile, wire
from ..dataplane import Dataplane, DataplaneSettings, Encap, FlowEvent, PuntEvent, Tunnel
from ..io.control import CommandError, ControlServer
from ..io.netlink import Netlink
from ..io.frames import inner_ipv6, ipv4_header, split_ipv4
from ..io.signaling import IPPROTO_MH, MhSocket, UdpSignalingSocket, parse_ipv6_packet
from ..io.tunnel_sender import TunnelSender
from ..metrics import DataplaneCollector, Metrics
from ..protocol.common import Arrival, Send
from ..protocol.ro import RoPair, RoRejected
from .tunnels import TunnelRegistry

log = logging.getLogger("pmip6ctl.daemon")


def message_kind(msg: wire.Message) -> str:
    """Metric label for a message: pbu/pba for proxy registrations, ro_bu/
    ro_ba for the draft's RO binding exchange, else the RFC 6275 name."""
    if isinstance(msg, wire.BindingUpdate):
        if wire.find_option(msg, wire.CNHomeNetworkPrefix) or wire.find_option(msg, wire.CNIPv4HomeAddress):
            return "ro_bu"
        return "pbu" if msg.flags & wire.BUFlags.P else "bu"
    if isinstance(msg, wire.BindingAck):
        if wire.find_option(msg, wire.ROAcknowledgement) or wire.find_option(msg, wire.IPv4ROAcknowledgement):
            return "ro_ba"
        return "pba" if msg.flags & wire.BAFlags.P else "ba"
    return {
        wire.HomeTestInit: "hoti", wire.CareofTestInit: "coti", wire.HomeTest: "hot",
        wire.CareofTest: "cot", wire.BindingError: "be", wire.Heartbeat: "heartbeat",
        wire.LocalizedRoutingInitiation: "lri", wire.LocalizedRoutingAck: "lra",
        wire.BindingRefreshRequest: "brr", wire.ExperimentalMessage: "experimental",
    }.get(type(msg), "other")


def status_label(status: int, codes=wire.Status) -> str:
    try:
        return codes(status).name.lower()
    except ValueError:
        return f"status_{status}"


def pair_from(args: dict, local: str = "mn", remote: str = "cn") -> RoPair:
    """The RO pair a control command names."""
    try:
        return RoPair(ipaddress.ip_address(args[local]), ipaddress.ip_address(args[remote]))
    except (KeyError, ValueError) as exc:
        raise CommandError(f"need an MN and a CN address: {exc}") from None


def result_label(msg: wire.Message) -> str:
    """The outcome a message carries, for the signaling counters."""
    if isinstance(msg, wire.BindingError):
        return status_label(msg.status, wire.BindingErrorStatus)
    if isinstance(msg, wire.LocalizedRoutingAck):
        return status_label(msg.status, wire.LRAStatus)
    if isinstance(msg, wire.BindingAck):
        return status_label(msg.status)
    return "ok"


class Raw4Signaling:
    """IPv4 protocol 41 carrying IPv6/MH for this node: what the LMA's IPv4
    tunnel delivers to a MAG's own proxy CoA (a CoT over IPv4 transport,
    draft §2.1.1.2). The XDP program passes such frames to the stack, and
    a raw socket is the only way in without a sit device."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[bytes, Arrival] | None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                return None
            try:
                src, dst, next_header, mh = parse_ipv6_packet(split_ipv4(packet)[3])
            except ValueError:
                continue                  # tunnelled data the kernel was handed: not ours
            if next_header == IPPROTO_MH:
                return mh, Arrival(src=src, dst=dst, home_path=True)

    def close(self) -> None:
        self.sock.close()


class Daemon:
    role = ""

    def __init__(self, config):
        self.config = config
        self.node = config.node.name
        self.metrics = Metrics(self.node, self.role)
        self.state_path = Path(config.control.socket).with_suffix(".state.json")
        self.started = time.time()
        self.dataplane: Dataplane | None = None
        self.tables = None
        self.netlink: Netlink | None = None
        self.tunnels: TunnelRegistry | None = None
        self.mh_socket: MhSocket | None = None
        self.udp_socket: UdpSignalingSocket | None = None
        self.raw4_socket: Raw4Signaling | None = None
        self.tunnel_sender: TunnelSender | None = None
        self._stopping: asyncio.Event | None = None
        self._timer_wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty = False

    # --- hooks for the role ----------------------------------------------------
    def attachments(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def setup(self) -> None:
        """Create the role's core and sockets (data plane already loaded)."""

    def restore(self, state: dict) -> None:
        """Rebuild the core from a saved snapshot."""

    def snapshot(self) -> dict:
        return {}

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        return []

    def on_timer(self, now: float) -> list:
        return []

    def next_deadline(self) -> float | None:
        return None

    def apply_action(self, action) -> None:
        if isinstance(action, RoRejected):           # the MAG's and the CN agent's responders
            log.warning("RO message from %s rejected: %s", action.peer, action.reason)
            self.metrics.count_message("ro", "in", action.reason.replace(" ", "_").replace("-", "_"))
            return
        raise NotImplementedError(f"{self.role} daemon cannot apply {action!r}")

    def on_dataplane_event(self, event: FlowEvent | PuntEvent) -> None:
        pass

    def control_handlers(self) -> dict:
        return {}

    def gauges(self):
        """(metric name, help, labels, value) for the collector."""
        return []

    # --- running -------------------------------------------------------------------
    def run(self) -> None:
        asyncio.run(self._main())

    def dataplane_settings(self) -> DataplaneSettings:
        dp = self.config.dataplane
        ro = self.config.ro
        return DataplaneSettings(
            node=self.node, role=self.role, pin_root=Path(dp.pin_root), generic_mode=dp.generic_mode,
            max_mn_entries=dp.max_mn_entries, max_ro_entries=dp.max_ro_entries, max_tunnels=dp.max_tunnels,
            max_peers=dp.max_peers, max_flows=dp.max_flows,
            ro_trigger_packets=ro.trigger_packets if ro.enabled else 0,
            event_interval_ms=dp.event_interval_ms, hop_limit=dp.hop_limit,
        )

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._timer_wakeup = asyncio.Event()
        self.netlink = Netlink()
        self.dataplane = Dataplane(self.dataplane_settings())
        self.tables = self.dataplane.load()
        self.tables.set_tx_ports(self.netlink.ifindexes())
        self.tables.set_local_addresses(self.netlink.local_addresses())
        self.tunnels = TunnelRegistry(self.tables)
        self.setup()
        state = statefile.load(self.state_path)
        if state:
            self.restore(state)
            log.info("restored state from %s", self.state_path)
        self.tunnels.forget_unused()
        for function, ifname in self.attachments():
            self.dataplane.attach(function, ifname)
        self.dataplane.open_events(self._event_from_thread)
        poller = threading.Thread(target=self._poll_events, name="perf-events", daemon=True)
        poller.start()

        control = ControlServer(Path(self.config.control.socket), {
            "status": lambda args: self.status(), "counters": lambda args: self.counters(),
            "peers": lambda args: self.peers(), "tables": lambda args: self.table_dump(),
            "signaling": lambda args: self.signaling_counts(), **self.control_handlers(),
        })
        await control.start()
        self.metrics.add_collector(DataplaneCollector(self.node, lambda: self.tables, self.gauges))
        self.metrics.serve(*self.config.metrics.listen)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stopping.set)
        timers = asyncio.create_task(self._timers())
        log.info("%s %s ready (control %s)", self.role, self.node, self.config.control.socket)
        self._save_state()
        try:
            await self._stopping.wait()
        finally:
            timers.cancel()
            await control.close()
            self._save_state()
            for sock in (self.mh_socket, self.udp_socket, self.raw4_socket):
                if sock:
                    self._loop.remove_reader(sock.fileno())
                    sock.close()
            # The programs stay attached and the maps pinned: forwarding goes
            # on without us, and the next start picks it all up.
            log.info("%s %s stopped; the data plane keeps forwarding", self.role, self.node)

    def stop(self) -> None:
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)

    # --- signaling in and out ------------------------------------------------------
    def open_signaling(self, ipv4_address=None) -> None:
        self.mh_socket = MhSocket()
        self._loop.add_reader(self.mh_socket.fileno(), self._drain, self.mh_socket)
        if ipv4_address is not None:
            self.udp_socket = UdpSignalingSocket(ipv4_address)
            self._loop.add_reader(self.udp_socket.fileno(), self._drain, self.udp_socket)
            self.raw4_socket = Raw4Signaling()
            self._loop.add_reader(self.raw4_socket.fileno(), self._drain, self.raw4_socket)
        self.tunnel_sender = TunnelSender(self.udp_socket)

    def _drain(self, sock) -> None:
        while True:
            try:
                received = sock.receive()
            except (ValueError, OSError) as exc:
                self.metrics.count_message("not_mh", "in", "malformed")
                log.warning("dropped a datagram on %s: %s", type(sock).__name__, exc)
                continue
            if received is None:
                return
            self.handle_signaling(*received)

    def handle_signaling(self, data: bytes, arrival: Arrival) -> None:
        """Decode, count, and feed one received mobility message to the core."""
        try:
            msg = wire.decode(data, arrival.checksum_src, arrival.checksum_dst)
        except wire.UnknownMessageType as exc:
            self.metrics.count_message(f"type_{exc.mh_type}", "in", "unknown_type")
            self.apply([arrival.reply(wire.BindingError(status=wire.BindingErrorStatus.UNRECOGNIZED_MH_TYPE,
                                                        home_address=arrival.src), arrival.dst)])
            return
        except wire.ChecksumError as exc:
            self.metrics.count_message("unknown", "in", "bad_checksum")
            log.warning("dropped a mobility message from %s: %s", arrival.src, exc)
            return
        except wire.WireError as exc:
            self.metrics.count_message("unknown", "in", "malformed")
            log.warning("dropped a malformed mobility message from %s: %s", arrival.src, exc)
            return
        self.metrics.count_message(message_kind(msg), "in")
        log.debug("in  %s from %s: %s", message_kind(msg), arrival.src, msg)
        try:
            actions = self.receive(msg, arrival, time.time())
        except Exception:
            self.metrics.count_message(message_kind(msg), "in", "internal_error")
            log.exception("processing %s from %s failed; the daemon goes on", message_kind(msg), arrival.src)
            return
        self.apply(actions)

    def send_home_path(self, action) -> None:
        """A HoTI/HoT (or, over IPv4 transport, a CoTI/CoT) into the tunnel
        toward the LMA that anchors action.anchor (default: its source)."""
        kind = message_kind(action.message)
        tunnel = self.home_tunnel(action.anchor or action.src)
        if tunnel is None:
            self.metrics.count_message(kind, "out", "no_home_tunnel")
            log.warning("no home tunnel for %s: %s not sent", action.anchor or action.src, kind)
            return
        packet = inner_ipv6(action.src, action.dst, wire.encode(action.message, action.src, action.dst))
        if action.wrap_ipv4 is not None:              # fig. 2
            src4, dst4 = action.wrap_ipv4
            packet = ipv4_header(src4, dst4, 41, len(packet)) + packet
        try:
            self.tunnel_sender.send(tunnel, packet)
        except OSError as exc:
            self.metrics.count_message(kind, "out", "send_failed")
            log.warning("sending %s into the LMA tunnel failed: %s", kind, exc)
            return
        self.metrics.count_message(kind, "out")

    def home_tunnel(self, address):
        """The tunnel toward the LMA anchoring address (MAGs only)."""
        return None

    def send(self, send: Send) -> None:
        kind = message_kind(send.message)
        result = result_label(send.message)
        sock = self.udp_socket if send.ipv4_dst is not None else self.mh_socket
        try:
            if send.wrap_ipv4 is not None:
                # fig. 3: IPv4 (our IPv4 proxy CoA → the CN) / IPv6 / MH, routed natively
                src4, dst4 = send.wrap_ipv4
                mh = wire.encode(send.message, send.src, send.dst)
                self.tunnel_sender.send(Tunnel(Encap.IP4, src4, dst4), inner_ipv6(send.src, send.dst, mh))
            elif sock is None:
                raise OSError("no IPv4 signaling socket (addresses.ipv4 is not configured)")
            else:
                sock.send(send)
        except OSError as exc:
            self.metrics.count_message(kind, "out", "send_failed")
            log.warning("sending %s to %s failed: %s", kind, send.ipv4_dst or send.dst, exc)
            return
        self.metrics.count_message(kind, "out", result)
        log.debug("out %s to %s: %s", kind, send.ipv4_dst or send.dst, send.message)

    def apply(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.send(action)
                # a PBU or PBA means the binding state moved (refreshes emit nothing else)
                self._dirty |= message_kind(action.message) in ("pbu", "pba")
            else:
                try:
                    self.apply_action(action)
                except Exception:
                    log.exception("applying %s failed", type(action).__name__)
                self._dirty = True
        if self._dirty:
            self._save_state()
        if actions and self._timer_wakeup:
            self._timer_wakeup.set()

    # --- timers ------------------------------------------------------------------------
    async def _timers(self) -> None:
        while True:
            deadline = self.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            try:
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._timer_wakeup.clear()
            now = time.time()
            deadline = self.next_deadline()
            if deadline is not None and now >= deadline:
                try:
                    self.apply(self.on_timer(now))
                except Exception:
                    log.exception("timer processing failed; the daemon goes on")

    # --- data-plane events -------------------------------------------------------------
    def _poll_events(self) -> None:
        while not self._stopping.is_set():
            try:
                self.dataplane.poll_events(timeout_ms=200)
            except Exception:
                log.exception("perf buffer poll failed")
                time.sleep(1)

    def _event_from_thread(self, event) -> None:
        self._loop.call_soon_threadsafe(self._on_event, event)

    def _on_event(self, event) -> None:
        try:
            self.on_dataplane_event(event)
        except Exception:
            log.exception("handling data-plane event %s failed", type(event).__name__)

    # --- state ----------------------------------------------------------------------------
    def _save_state(self) -> None:
        try:
            statefile.save(self.state_path, {"role": self.role, "node": self.node, **self.snapshot()})
        except OSError as exc:
            log.warning("cannot save state to %s: %s", self.state_path, exc)
        self._dirty = False

    # --- common control commands -------------------------------------------------------------
    def status(self) -> dict:
        return {"node": self.node, "role": self.role, "uptime": round(time.time() - self.started, 1),
                "pid": os.getpid(), "pin_dir": str(self.dataplane.settings.pin_dir),
                "attached": [{"program": f, "interface": i} for f, i in self.attachments()],
                "metrics": "{}:{}".format(*self.config.metrics.listen)}

    def counters(self) -> list[dict]:
        rows = [{"program": c.program, "verdict": c.verdict, "reason": c.reason,
                 "packets": c.packets, "bytes": c.bytes} for c in self.tables.counters()]
        programs = {f.removeprefix("xdp_") for f, _ in self.attachments()}
        return [r for r in rows if r["program"] in programs]

    def table_dump(self) -> dict:
        """What the data plane holds right now, read from the maps."""
        t = self.tables
        return {
            "mobile_nodes": [{"prefix": str(p), "tunnel": i} for p, i in sorted(t.list_mns().items(), key=str)],
            "ro_entries": [{"local": str(e.local), "remote": str(e.remote), "tunnel": e.tunnel_id} for e in t.list_ro()],
            "tunnels": [{"tunnel": i, "encap": x.encap.name, "local": str(x.local), "remote": str(x.remote),
                         "sport": x.sport, "dport": x.dport} for i, x in sorted(t.list_tunnels().items())],
            "peers": [{"address": str(p.address), "port": p.port, "tunnel": p.tunnel_id, "kind": p.kind.name}
                      for p in t.list_peers()],
            "routes": [str(r) for r in self.netlink.our_routes()],
        }

    def signaling_counts(self) -> list[dict]:
        rows = []
        for metric in self.metrics.signaling.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    rows.append({**{k: v for k, v in sample.labels.items() if k != "node"}, "count": int(sample.value)})
        return sorted(rows, key=lambda r: (r["type"], r["direction"], r["result"]))

    def peers(self) -> list[dict]:
        return [{"tunnel": i, "encap": t.encap.name, "local": str(t.local), "remote": str(t.remote),
                 "port": t.dport or None, "users": len(users)} for i, t, users in self.tunnels.items()]
