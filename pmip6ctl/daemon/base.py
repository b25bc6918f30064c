"""What the LMA, MAG and CN-agent daemons share: the asyncio loop, the data
plane, the signaling sockets, timers, the control socket, metrics, and
state that survives a restart.

The protocol lives in the role's node core (protocol/mag.py, lma.py,
cn.py); a daemon feeds it what arrives (messages, timer ticks, data-plane
and link events) and carries out the actions it returns: socket sends, map
writes, routes. It decides nothing about the protocol itself."""

from __future__ import annotations

import asyncio
import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
import logging
import os
import signal
import threading
import time
import dataclasses
from pathlib import Path

from .. import defs, wire
from ..dataplane import Dataplane, DataplaneSettings, FlowEvent, PuntEvent
from ..dataplane.tables import LMA_MN_HELD
from ..dataplane.tables import RO_DRAINING, RO_RX_ONLY
from ..io.control import CommandError, ControlServer
from ..io.frames import home_path_packet
from ..io.netlink import LinkEvent, Netlink
from ..io.sdnotify import Notifier
from ..io.signaling import MhSocket, Raw4Signaling, UdpSignalingSocket
from ..io.store import Store
from ..io.tunnel_sender import TunnelSender
from ..metrics import DataplaneCollector, Metrics
from ..config import ConfigError, differences, load_config
from ..protocol.auth import NodeKeys, SignalingGuard, SignalingPeer, SignalingRefused
from ..protocol.heartbeat import HeartbeatIgnored, HeartbeatPolicy, PeerAlive, PeerDead
from ..security import PeerKey
from ..protocol.node import Node, NodeError, NotSent, StateChanged
from ..protocol.ro import RoFailed, RoPair, RoRejected, RoRemoved
from ..protocol.vocabulary import message_kind, result_label
from ..transport import Arrival, Encap, Send, SendHomePath, Tunnel
from .health import LoopHealth
from .intake import EventIntake
from .persist import Persistence, Table
from .tunnels import TunnelConflict, TunnelRegistry

log = logging.getLogger("pmip6ctl.daemon")


def peer_key(peer) -> PeerKey:
    return PeerKey(peer.spi, peer.key, tuple(peer.prefixes))


def node_keys(config) -> NodeKeys:
    """The node's keys from its [[peers]] (docs/security.md): at start, and
    again at each reload. The guard's peers: every peer at an LMA, the own
    LMA at a MAG; quick-mode keys: RO peers; inter-LMA keys: peer LMAs."""
    c, role = config, config.node.role
    if not c.authenticated:
        talks_to = []
    elif role == "lma":
        talks_to = c.peers
    else:
        talks_to = [p for p in c.peers_of("lma") if c.mag and p.address == c.mag.lma]
    return NodeKeys(
        signaling={p.address: SignalingPeer(p.address, peer_key(p), p.ipv4, p.behind_nat) for p in talks_to},
        quick_mode={p.address: peer_key(p) for p in c.peers
                    if p.quick_mode and (role == "cn" or p.role in ("mag", "cn"))} if role != "lma" else {},
        inter_lma={p.address: peer_key(p) for p in c.peers_of("lma")} if role == "lma" else {})


def signaling_guard(config, window: float = 7.0) -> SignalingGuard | None:
    """The guard over the signaling with the node's peers (docs/security.md),
    or None when the config turns authentication off (said loudly)."""
    if not config.authenticated:
        log.warning("security.auth = \"none\": signaling between MAGs and LMAs is NOT authenticated; "
                    "anyone who can reach this node can create, move and end bindings")
        return None
    return SignalingGuard(dict(node_keys(config).signaling), window=window)


def host_route(address: IPv4Address | IPv6Address) -> IPv4Network | IPv6Network:
    """The /32 or /128 of an address, built from its number (a network made
    from text, or from an address object, is parsed from text)."""
    if address.version == 4:
        return IPv4Network((int(address), 32))
    return IPv6Network((int(address), 128))


def heartbeat_policies(config) -> tuple[HeartbeatPolicy, HeartbeatPolicy]:
    """[heartbeat]: (toward the signaling peers, toward the RO peers)."""
    h = config.heartbeat
    return HeartbeatPolicy(h.interval, h.missed), HeartbeatPolicy(h.ro_interval, h.ro_missed)


# What a reload applies; any other change is reported and waits for a restart.
RELOADABLE = ("peers", "security.key_grace", "mag.mn_ids", "heartbeat", "lma.local_routing")


def reloaded(running, new):
    """The running config with the RELOADABLE parts of new, and nothing else:
    a new mag.lma or security.auth must not reach the guard before a restart."""
    return dataclasses.replace(
        running, peers=new.peers, heartbeat=new.heartbeat,
        security=dataclasses.replace(running.security, key_grace=new.security.key_grace),
        mag=dataclasses.replace(running.mag, mn_ids=new.mag.mn_ids) if running.mag and new.mag else running.mag,
        lma=dataclasses.replace(running.lma, local_routing=new.lma.local_routing) if running.lma and new.lma
        else running.lma)


def pair_from(args: dict, local: str = "mn", remote: str = "cn") -> RoPair:
    """The RO pair a control command names."""
    try:
        return RoPair(ipaddress.ip_address(args[local]), ipaddress.ip_address(args[remote]))
    except (KeyError, ValueError) as exc:
        raise CommandError(f"need an MN and a CN address: {exc}") from None


class Daemon:
    role = ""

    def __init__(self, config):
        self.config = config
        self.node_name = config.node.name
        self.metrics = Metrics(self.node_name, self.role)
        # the JSON state file of pmip6ctl before the store: read once, then removed
        self.legacy_state_path = Path(config.control.socket).with_suffix(".state.json")
        self.persistence: Persistence | None = None
        self.started = time.time()
        self.node: Node | None = None
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
        self.reloads = {"ok": 0, "failed": 0}
        self.notifier = Notifier()                 # systemd Type=notify: READY, WATCHDOG, STOPPING
        self.health: LoopHealth | None = None

    # --- hooks for the role ----------------------------------------------------
    def attachments(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def setup(self) -> None:
        """Create the role's node core and sockets (data plane already loaded)."""

    def restore(self, state: dict) -> None:
        """Rebuild the node core from its saved state (persisted_tables' records)."""

    def persisted_tables(self) -> list[Table]:
        """What the node keeps in its store (daemon/persist.py), by kind."""
        return []

    def reconcile(self) -> None:
        """After restore: take out of the maps what no saved record explains."""

    def apply_action(self, action) -> None:
        """Carry out one of the role's own commands (or log a notification)."""
        raise NotImplementedError(f"{self.role} daemon cannot apply {action!r}")

    def on_dataplane_event(self, event: FlowEvent | PuntEvent) -> None:
        pass

    def on_link(self, event: LinkEvent) -> None:
        """A link came, went, or changed carrier."""

    def reload_role(self, config) -> None:
        """Apply the role's own reloadable settings (RELOADABLE) from config."""

    def control_handlers(self) -> dict:
        return {}

    def gauges(self):
        """(metric name, help, labels, value) for the collector."""
        return []

    def _all_gauges(self):
        yield ("pmip6_event_queue_depth", "Data-plane events waiting for the daemon", {}, self.intake.depth)
        yield ("pmip6_event_queue_capacity", "Room for data-plane events waiting for the daemon", {},
               self.intake.capacity)
        age = self.health.tick_age() if self.health is not None else None
        if age is not None:              # read on the scrape's thread: it grows while the loop is stuck
            yield ("pmip6_event_loop_tick_age_seconds", "Seconds since the event loop's last tick (one a second "
                   "while it turns; /healthz fails past 5 s)", {}, age)
        yield from self.gauges()
        states = {}
        for row in self.node.liveness_rows(time.time()):
            for state in ("alive", "dead"):          # both, 0 when none: a series that vanishes is "no data"
                states.setdefault((row["kind"], state), 0)
            states[(row["kind"], row["state"])] += 1
        for (kind, state), n in sorted(states.items()):
            yield ("pmip6_heartbeat_peers", "Peers watched by heartbeats (RFC 5847), by kind and state",
                   {"kind": kind, "state": state}, n)

    # --- running -------------------------------------------------------------------
    def run(self) -> None:
        profile = os.environ.get("PMIP6CTL_PROFILE")      # docs/performance.md: profiling a daemon
        if not profile:
            asyncio.run(self._main())
            return
        import cProfile
        profiler = cProfile.Profile()
        try:
            profiler.runcall(asyncio.run, self._main())
        finally:
            profiler.dump_stats(profile.format(node=self.node_name))

    def dataplane_settings(self) -> DataplaneSettings:
        dp = self.config.dataplane
        ro = self.config.ro
        return DataplaneSettings(
            node=self.node_name, role=self.role, pin_root=Path(dp.pin_root), generic_mode=dp.generic_mode,
            max_mn_entries=dp.max_mn_entries, max_ro_entries=dp.max_ro_entries, max_tunnels=dp.max_tunnels,
            max_peers=dp.max_peers, max_flows=dp.max_flows,
            ro_trigger_packets=ro.trigger_packets if ro.enabled else 0,
            event_interval_ms=dp.event_interval_ms, hop_limit=dp.hop_limit,
            punt_rate=dp.punt_rate, punt_burst=dp.punt_burst, icmp_rate=dp.icmp_rate, icmp_burst=dp.icmp_burst,
            handover=bool(self.config.mag and self.config.mag.buffer_uplink),
        )

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._timer_wakeup = asyncio.Event()
        self.netlink = Netlink()
        self.check_metrics_exposure()             # before anything is loaded, opened or bound
        self.dataplane = Dataplane(self.dataplane_settings())
        self.tables = self.dataplane.load()
        # Every interface a redirect may leave through, kept current from the
        # link events (watching before listing: no link slips between).
        self.netlink.watch_links(lambda event: self._loop.call_soon_threadsafe(self._on_link, event))
        self.set_tx_ports(self.netlink.ifindexes())
        self.tables.set_local_addresses(self.netlink.local_addresses())
        self.tunnels = TunnelRegistry(self.tables)
        self.setup()
        sec = self.config.security
        self.node.limit_answers(sec.answer_rate, sec.answer_burst, sec.answer_prefixes)
        self.open_store()
        self.tunnels.forget_unused()
        # Events first, then the programs: the first notice of a flow must find
        # a reader, or the next one waits event_interval_ms (a restart without
        # state learned its MNs a second late).
        self.intake = EventIntake(self.on_dataplane_event, capacity=self.config.dataplane.event_queue)
        self.intake.bind(self._loop.call_soon_threadsafe, self._loop.call_soon)
        self.dataplane.open_events(self.intake.put, on_lost=self.intake.on_lost)
        poller = threading.Thread(target=self._poll_events, name="perf-events", daemon=True)
        poller.start()
        for function, ifname in self.attachments():
            self.dataplane.attach(function, ifname)

        control = ControlServer(Path(self.config.control.socket), {
            "status": lambda args: self.status(), "counters": lambda args: self.counters(),
            "peers": lambda args: self.peers(), "tables": lambda args: self.table_dump(),
            "signaling": lambda args: self.signaling_counts(), "reload": lambda args: self.reload(),
            **self.control_handlers(),
        })
        await control.start()
        self.metrics.add_collector(DataplaneCollector(self.node_name, lambda: self.tables, self._all_gauges,
                                                      intake=self.intake, bounded=self.node.bounded))
        self.health = LoopHealth(self.attachments, xdp_attached=self.netlink.xdp_attached, notifier=self.notifier)
        self.health.start(self._loop)
        self.metrics.serve(*self.config.metrics.listen, health=self.health)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stopping.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        timers = asyncio.create_task(self._timers())
        log.info("%s %s ready (control %s)", self.role, self.node_name, self.config.control.socket)
        self.notifier.ready(f"{self.role} {self.node_name} ready")
        try:
            await self._stopping.wait()
        finally:
            self.notifier.stopping()
            self.health.stop()
            timers.cancel()
            await control.close()
            self._commit()
            self.persistence.store.close()
            for sock in (self.mh_socket, self.udp_socket, self.raw4_socket):
                if sock:
                    self._loop.remove_reader(sock.fileno())
                    sock.close()
            # The programs stay attached and the maps pinned: forwarding goes
            # on without us, and the next start picks it all up.
            log.info("%s %s stopped; the data plane keeps forwarding", self.role, self.node_name)

    def check_metrics_exposure(self) -> None:
        """config.py refuses a wildcard or public metrics.listen without
        metrics.expose; what it cannot see is an address on an access
        interface, the MN side (a MAG's). Refused here, before anything listens."""
        m = self.config.metrics
        if m.expose or m.host == "localhost":
            return
        host = ipaddress.ip_address(m.host)
        for ifname in self.config.interfaces.access:
            try:
                on_link = host in self.netlink.addresses_on(ifname)
            except LookupError:
                continue                          # not there yet: nothing of ours listens on it
            if on_link:
                raise SystemExit(f"{self.config.path}: metrics.listen: {m.host} is on access interface {ifname} "
                                 "(the MN side): give a loopback or management address, or set metrics.expose = true")

    def stop(self) -> None:
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)

    # --- signaling in -------------------------------------------------------------
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
        """Decode, count, and feed one received mobility message to the node."""
        now = time.time()
        try:
            msg = wire.decode(data, arrival.checksum_src, arrival.checksum_dst)
        except wire.UnknownMessageType as exc:
            self.metrics.count_message(f"type_{exc.mh_type}", "in", "unknown_type")
            self.apply(self.node.unknown_message(exc.mh_type, arrival, now))
            return
        except wire.PayloadProtoError as exc:
            self.metrics.count_message("unknown", "in", "bad_payload_proto")
            log.warning("dropped a mobility message from %s: %s", arrival.src, exc)
            return
        except wire.ChecksumError as exc:
            self.metrics.count_message("unknown", "in", "bad_checksum")
            log.warning("dropped a mobility message from %s: %s", arrival.src, exc)
            return
        except wire.WireError as exc:
            self.metrics.count_message("unknown", "in", "malformed")
            log.warning("dropped a malformed mobility message from %s: %s", arrival.src, exc)
            return
        kind = message_kind(msg)
        log.debug("in  %s from %s: %s", kind, arrival.src, msg)
        try:
            actions = self.node.receive(msg, arrival, now)
        except Exception:
            self.metrics.count_message(kind, "in", "internal_error")
            log.exception("processing %s from %s failed; the daemon goes on", kind, arrival.src)
            return
        if not any(isinstance(a, (SignalingRefused, HeartbeatIgnored)) for a in actions):    # counted by reason
            self.metrics.count_message(kind, "in")
        self.apply(actions)

    # --- actions out ----------------------------------------------------------------------
    def apply(self, actions: list) -> None:
        """Carry out actions in order. From a StateChanged on, they wait for
        the store: one commit at the end of this loop turn takes every
        change made in it (a burst of PBUs is one transaction), and only
        then do the answers leave, so a PBA or BA is never sent for a
        binding a kill -9 could lose. The timers look again whether or not
        the actions wait: the node's deadlines changed when it made them."""
        if actions and self._timer_wakeup:
            self._timer_wakeup.set()
        if self.persistence is not None:
            actions = self.persistence.admit(actions, lambda: self._loop.call_soon(self._commit))
        for action in actions:
            self._apply_guarded(action)

    def _commit(self) -> None:
        """The store's commit for this loop turn, then what waited for it."""
        p = self.persistence
        held, unsent, error = p.commit()
        if error is not None:
            self.metrics.store_errors.labels(self.node_name).inc()
            for send in unsent:
                self.metrics.count_message(message_kind(send.message), "out", "store_failed")
            log.error("%s: %d messages it held back are not sent (the peers retransmit)", error, len(unsent))
        elif p.last_rows:
            self.metrics.store_commits.labels(self.node_name).inc()
            self.metrics.store_rows.labels(self.node_name).inc(p.last_rows)
            self.metrics.store_commit_seconds.labels(self.node_name).observe(p.last_commit_seconds)
        for action in held:
            self._apply_guarded(action)

    def _apply_guarded(self, action) -> None:
        try:
            self._apply_one(action)
        except TunnelConflict as exc:
            self.metrics.tunnels_refused.labels(self.node_name).inc()
            log.error("%s not applied: %s", type(action).__name__, exc)
        except Exception:
            log.exception("applying %s failed", type(action).__name__)

    def _apply_one(self, action) -> None:
        if isinstance(action, Send):
            self.send(action)
        elif isinstance(action, SendHomePath):
            self.send_home_path(action)
        elif isinstance(action, StateChanged):
            pass                                  # apply() commits before what follows
        elif isinstance(action, NotSent):
            self.metrics.count_message(action.kind, "out", action.reason)
            log.warning("%s not sent: %s %s", action.kind, action.reason.replace("_", " "), action.detail)
        elif isinstance(action, SignalingRefused):
            self.metrics.count_message(action.kind, "in", action.reason)
            log.warning("%s from %s refused: %s%s", action.kind, action.src, action.reason.text,
                        f" ({action.detail})" if action.detail else "")
        elif isinstance(action, RoRejected):           # the MAG's and the CN agent's responders
            log.warning("RO message from %s rejected: %s%s", action.peer, action.reason.text,
                        f" ({action.detail})" if action.detail else "")
            self.metrics.count_message("ro", "in", action.reason)
        elif isinstance(action, HeartbeatIgnored):
            self.metrics.count_message("heartbeat", "in", action.reason)
            log.debug("heartbeat from %s ignored: %s%s", action.src, action.reason.text,
                      f" ({action.detail})" if action.detail else "")
        elif isinstance(action, PeerDead):
            self.metrics.liveness.labels(self.node_name, action.kind, "dead").inc()
            heard = "never answered" if action.last_heard is None else \
                f"last answered {time.time() - action.last_heard:.1f} s ago"
            log.warning("%s %s is dead: %d heartbeats missed in a row (%s)", action.kind.text, action.peer,
                        action.missed, heard)
        elif isinstance(action, PeerAlive):
            self.metrics.liveness.labels(self.node_name, action.kind, "alive").inc()
            log.warning("%s %s answers heartbeats again (dead for %.1f s)", action.kind.text, action.peer,
                        time.time() - action.dead_since)
        elif isinstance(action, RoRemoved):
            self.metrics.ro_removed.labels(self.node_name, action.role, action.reason).inc()
            self.apply_action(action)
        elif isinstance(action, RoFailed):
            log.info("RO %s failed: %s (retry after %.0f s)", action.pair, action.text, action.retry_at - time.time())
            self.metrics.ro_attempts.labels(self.node_name, action.mode, "failed").inc()
        else:
            self.apply_action(action)

    def send(self, send: Send) -> None:
        kind = message_kind(send.message)
        sock = self.udp_socket if send.ipv4_dst is not None else self.mh_socket
        try:
            if send.wrap_ipv4 is not None:
                # fig. 3: IPv4 (our IPv4 proxy CoA → the CN) / IPv6 / MH, routed natively
                src4, dst4 = send.wrap_ipv4
                mh = wire.encode(send.message, send.src, send.dst)
                self.tunnel_sender.send(Tunnel(Encap.IP4, src4, dst4), home_path_packet(send.src, send.dst, mh))
            elif sock is None:
                raise OSError("no IPv4 signaling socket (addresses.ipv4 is not configured)")
            else:
                sock.send(send)
        except OSError as exc:
            self.metrics.count_message(kind, "out", "send_failed")
            log.warning("sending %s to %s failed: %s", kind, send.ipv4_dst or send.dst, exc)
            return
        self.metrics.count_message(kind, "out", result_label(send.message))
        log.debug("out %s to %s: %s", kind, send.ipv4_dst or send.dst, send.message)

    def send_home_path(self, action: SendHomePath) -> None:
        """A HoTI/HoT (or, over IPv4 transport, a CoTI/CoT) into the tunnel
        toward the LMA the node chose."""
        kind = message_kind(action.message)
        packet = home_path_packet(action.src, action.dst, wire.encode(action.message, action.src, action.dst),
                                  action.wrap_ipv4)
        try:
            self.tunnel_sender.send(action.tunnel, packet)
        except OSError as exc:
            self.metrics.count_message(kind, "out", "send_failed")
            log.warning("sending %s into the LMA tunnel failed: %s", kind, exc)
            return
        self.metrics.count_message(kind, "out")

    # --- timers ------------------------------------------------------------------------
    async def _timers(self) -> None:
        while True:
            deadline = self.node.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            try:
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._timer_wakeup.clear()
            now = time.time()
            deadline = self.node.next_deadline()
            if deadline is not None and now >= deadline:
                try:
                    self.apply(self.node.on_timer(now))
                except Exception:
                    log.exception("timer processing failed; the daemon goes on")

    # --- data-plane and link events -------------------------------------------------------
    def _poll_events(self) -> None:
        while not self._stopping.is_set():
            try:
                self.dataplane.poll_events(timeout_ms=200)
            except Exception:
                log.exception("perf buffer poll failed")
                time.sleep(1)

    def _on_link(self, event: LinkEvent) -> None:
        """Keep the devmap current (a link made after start, as `lab move`
        makes them, is a valid egress at once), then the role's view."""
        try:
            if event.deleted:
                self.tables.remove_tx_port(event.ifindex)
            else:
                self.set_tx_ports([event.ifindex])
            self.on_link(event)
        except Exception:
            log.exception("handling the link event for %s failed", event.ifname)

    def set_tx_ports(self, ifindexes) -> None:
        for ifindex in self.tables.set_tx_ports(ifindexes):
            log.warning("the devmap (tx_ports, %d entries) is full: packets out of ifindex %d go to the kernel",
                        defs.constants()["MAX_PORTS"], ifindex)

    # --- state ----------------------------------------------------------------------------
    def open_store(self) -> None:
        """Open the node's store (taking over an old JSON state file once),
        restore the node from it, and reconcile the pinned maps with it."""
        s = self.config.store
        started = time.monotonic()
        store = Store(s.path, synchronous=s.synchronous)
        self.persistence = Persistence(store, self.persisted_tables(), self.node.guard)
        self.persistence.migrate(self.legacy_state_path)
        state = self.persistence.load()
        if self.node.guard is not None:
            self.node.guard.restore_replay(state.get("replay", {}))
        self.restore(state)
        self.persistence.forget_changes()
        self.reconcile()
        log.info("restored from %s in %.2f s: %d records", s.path, time.monotonic() - started, store.count())

    # --- common control commands -------------------------------------------------------------
    def command(self, handler):
        """A control handler whose NodeError reaches the operator as one line."""
        def call(args: dict):
            try:
                return handler(args)
            except NodeError as exc:
                raise CommandError(str(exc)) from None
        return call

    # --- reload (SIGHUP, `pmip6ctl reload`) -----------------------------------------------------
    def reload(self) -> dict:
        """Read the config file again and apply what can change while running
        (RELOADABLE: keys and peers, without dropping a binding). A config
        that does not load changes nothing."""
        try:
            config = load_config(self.config.path)
        except ConfigError as exc:
            self._count_reload("failed")
            log.error("reload refused, nothing changed: %s", exc)
            raise CommandError(f"reload refused, nothing changed: {exc}") from None
        if (config.node.role, config.node.name) != (self.role, self.node_name):
            self._count_reload("failed")
            raise CommandError(f"reload refused, nothing changed: {config.path} is for {config.node.role} "
                               f"{config.node.name}, this is {self.role} {self.node_name}")
        changed = differences(self.config, config)
        later = [key for key in changed if not key.startswith(RELOADABLE)]
        self.config = reloaded(self.config, config)
        keys = self.node.rekey(node_keys(self.config), time.time(), config.security.key_grace)
        self.node.configure_heartbeats(*heartbeat_policies(self.config), time.time())
        if self._timer_wakeup is not None:
            self._timer_wakeup.set()              # the next deadline may be sooner now
        self.reload_role(self.config)
        self._count_reload("ok")
        result = {"applied": [key for key in changed if key.startswith(RELOADABLE)],
                  "needs_restart": later, "keys_added": sorted(map(str, keys.added)),
                  "keys_removed": sorted(map(str, keys.removed)), "keys_rotated": sorted(map(str, keys.rotated))}
        log.info("reloaded %s: applied %s; rotated keys of %s%s", config.path, ", ".join(result["applied"]) or "nothing",
                 ", ".join(result["keys_rotated"]) or "nobody",
                 f"; needs a restart to apply: {', '.join(later)}" if later else "")
        return result

    def _count_reload(self, result: str) -> None:
        self.reloads[result] += 1
        self.metrics.reloads.labels(self.node_name, result).inc()

    def _reload_on_signal(self) -> None:
        try:
            self.reload()
        except CommandError:
            pass                                  # logged and counted; the old config stays

    def status(self) -> dict:
        return {"node": self.node_name, "role": self.role, "uptime": round(time.time() - self.started, 1),
                "pid": os.getpid(), "pin_dir": str(self.dataplane.settings.pin_dir),
                "attached": [{"program": f, "interface": i} for f, i in self.attachments()],
                "metrics": "{}:{}".format(*self.config.metrics.listen), "config": str(self.config.path),
                "reloads": dict(self.reloads),
                "events": {"queued": self.intake.depth, "capacity": self.intake.capacity,
                           "handled": self.intake.taken, "dropped_queue_full": self.intake.dropped,
                           "lost_in_perf_buffer": self.intake.lost,
                           "over_budget_in_xdp": sum(n for (_, kind), n in self.tables.event_counts().items()
                                                     if kind == "over_budget")},
                "keys_in_grace": [str(a) for a in self.node.keys_in_grace()],
                "liveness": self.node.liveness_rows(time.time()), **self.limits()}

    def limits(self) -> dict:
        """The node's bounded tables, as `status` shows them (docs/operations.md)."""
        return {"limits": {b.table: {"held": b.held, "capacity": b.capacity, "setting": b.setting,
                                     "pushed_out": dict(b.pushed_out), "refused": dict(b.refused)}
                           for b in self.node.bounded()}}

    def counters(self) -> list[dict]:
        rows = [{"program": c.program, "verdict": c.verdict, "reason": c.reason,
                 "packets": c.packets, "bytes": c.bytes} for c in self.tables.counters()]
        programs = {f.removeprefix("xdp_") for f, _ in self.attachments()}
        return [r for r in rows if r["program"] in programs]

    def table_dump(self) -> dict:
        """What the data plane holds right now, read from the maps."""
        t = self.tables
        return {
            # held (LMA): the MN is between MAGs, its downlink goes to the hold (docs/operations.md)
            "mobile_nodes": [{"prefix": str(p), "tunnel": i} | ({"held": f == LMA_MN_HELD} if self.role == "lma" else {})
                             for p, (i, f) in sorted(t.list_mns(True).items(), key=str)],
            "ro_entries": [{"local": str(e.local), "remote": str(e.remote), "tunnel": e.tunnel_id,
                            "state": ro_entry_state(e.flags)} for e in t.list_ro()],
            "tunnels": [{"tunnel": i, "encap": x.encap.name, "local": str(x.local), "remote": str(x.remote),
                         "sport": x.sport, "dport": x.dport} for i, x in sorted(t.list_tunnels().items())],
            "peers": [{"address": str(p.address), "port": p.port, "tunnel": p.tunnel_id, "kind": p.kind.name}
                      for p in t.list_peers()],
            "routes": [str(r) for r in self.netlink.our_routes()],
            "tx_ports": t.list_tx_ports(),
            **({"local_routes": [{"local": str(local), "remote": str(remote), "ifindex": ifindex}
                                 for local, remote, ifindex, _ in t.list_local_routes()]}
               if t.local_routes is not None else {}),
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


def ro_entry_state(flags: int) -> str:
    """An RO entry's flags as `tables` shows them."""
    if flags & RO_DRAINING:
        return "draining"            # ended: lets the peer's last packets in, sends nothing
    if flags & RO_RX_ONLY:
        return "receive_only"        # a responder's, until the peer's first packet
    return "active"
