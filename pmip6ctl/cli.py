"""pmip6ctl: route optimization for Proxy Mobile IPv6, with an XDP data plane.

\b
Run a node:            pmip6ctl lma run -c lma.toml   (also: mag run, cn run)
Ask a running node:    pmip6ctl --node mag1 bindings  (status, counters, peers, ...)
Try it on one machine: pmip6ctl lab up && pmip6ctl lab demo && pmip6ctl lab down

Every listing takes --json (or -j before the command); --raw prints numbers
without thousands separators. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from pathlib import Path

import click

from . import __version__
from .io.control import CommandError, ControlClient
from .security import MAX_RR_BINDING_LIFETIME
from .tables_fmt import raw_numbers, render_table

RUN_DIR = Path("/run/pmip6ctl")
LAB_RUN_DIR = RUN_DIR / "lab"      # `pmip6ctl lab up`'s sockets (pmip6ctl/lab/runner.py)


def daemon_sockets() -> dict[str, Path]:
    """Every control socket here by node name: a production daemon's under
    its own name, the lab's as lab-<node>."""
    found = {p.stem: p for p in sorted(RUN_DIR.glob("*.sock"))}
    found.update({f"lab-{p.stem}": p for p in sorted(LAB_RUN_DIR.glob("*.sock"))})
    return found


def socket_of(node: str) -> Path:
    """NAME's socket: /run/pmip6ctl/NAME.sock; lab-NAME is the lab's NAME; a
    NAME with no production socket but a lab one is the lab's."""
    production = RUN_DIR / f"{node}.sock"
    if production.exists():
        return production
    if node.startswith("lab-") and (LAB_RUN_DIR / f"{node[4:]}.sock").exists():
        return LAB_RUN_DIR / f"{node[4:]}.sock"
    if (LAB_RUN_DIR / f"{node}.sock").exists():
        return LAB_RUN_DIR / f"{node}.sock"
    return production


# --- plumbing ---------------------------------------------------------------------
class Context:
    def __init__(self, node: str | None, socket: str | None, as_json: bool = False):
        self.node = node
        self.socket = socket
        self.as_json = as_json

    def socket_path(self) -> Path:
        if self.socket:
            return Path(self.socket)
        if self.node:
            return socket_of(self.node)
        sockets = daemon_sockets()
        if len(sockets) == 1:
            return next(iter(sockets.values()))
        names = ", ".join(sockets) or "none running"
        raise click.UsageError(f"which node? use --node NAME (daemons here: {names})")

    def client(self) -> ControlClient:
        return ControlClient(self.socket_path())

    def call(self, command: str, **args):
        try:
            return self.client().call(command, **args)
        except (ConnectionError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        except CommandError as exc:
            raise click.ClickException(str(exc)) from None


def global_json() -> bool:
    """Whether -j/--json was given before the command."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(getattr(root, "as_json", False))


def json_option(func):
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @functools.wraps(func)
    def wrapper(*args, as_json: bool, **kwargs):
        return func(*args, as_json=as_json or global_json(), **kwargs)
    return wrapper


def emit(data, as_json: bool, table) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(table(data))


def run_daemon(role: str, config_path: str, verbose: bool) -> None:
    from .config import ConfigError, load_config
    from .dataplane import DataplaneError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from . import logthrottle
    logthrottle.install()
    # A reload (SIGHUP) while the programs compile must not end the daemon; once it is
    # ready, SIGHUP reloads the config (Daemon.reload).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if config.node.role != role:
        raise click.ClickException(f"{config_path}: node.role: is {config.node.role!r}, but this is `pmip6ctl {role} run`")
    if role == "lma":
        from .daemon.lma import LmaDaemon as cls
    elif role == "mag":
        from .daemon.mag import MagDaemon as cls
    else:
        from .daemon.cn import CnDaemon as cls
    try:
        cls(config).run()
    except DataplaneError as exc:
        raise click.ClickException(str(exc)) from None


# --- the command tree ---------------------------------------------------------------
@click.group(help=__doc__)
@click.version_option(__version__, prog_name="pmip6ctl")
@click.option("--node", "-n", metavar="NAME",
              help="The daemon to talk to: /run/pmip6ctl/NAME.sock; lab-NAME is the lab's "
                   "(/run/pmip6ctl/lab/NAME.sock), as is a NAME with no production socket.")
@click.option("--socket", metavar="PATH", help="The control socket, when it is not the default one.")
@click.option("--json", "-j", "as_json", is_flag=True, help="Print JSON instead of tables (every command).")
@click.option("--raw", is_flag=True, help="Print numbers as they are, without thousands separators.")
@click.pass_context
def main(ctx, node, socket, as_json, raw):
    ctx.obj = Context(node, socket, as_json)
    raw_numbers.set(raw)


def _daemon_group(role: str, what: str):
    @main.group(name=role, help=what)
    def group():
        pass

    @group.command(name="run", help=f"Run the {role.upper()} daemon in the foreground (as root).")
    @click.option("--config", "-c", "config_path", required=True, type=click.Path(dir_okay=False),
                  help="The node's TOML file (examples in deploy/examples).")
    @click.option("--verbose", "-v", is_flag=True, help="Log every message sent and received.")
    def run(config_path, verbose):
        run_daemon(role, config_path, verbose)

    return group


_daemon_group("lma", "Local Mobility Anchor: binding cache, RO query answers, XDP tunnels to the MAGs.")
_daemon_group("mag", "Mobile Access Gateway: attaches MNs, registers them with the LMA, runs route optimization.")
_daemon_group("cn", "Correspondent agent for an RO-capable CN outside the domain (draft scenario 3).")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a key file that exists.")
def keygen(path, force):
    """Write a new 32-octet key, in hex, to PATH, readable by its owner only.

    Both ends of a [[peers]] pair name a copy of the same file (docs/security.md)."""
    from pathlib import Path

    from .io.files import write_private
    from .security import new_peer_key

    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{path} exists: --force replaces it (both ends must then get the new key)")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_private(target, new_peer_key().hex() + "\n")
    click.echo(f"{path}: a new key (mode 0600)")


@main.group()
def config():
    """Check node configuration files."""


@config.command(name="check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
def config_check(paths, as_json):
    """Check each TOML file as a daemon would load it, and report every
    problem, one line each (`file: field: why`); exit 1 if there is any."""
    from .config import check_config

    results, failed = [], False
    for path in paths:
        cfg, errors = check_config(path)
        failed |= bool(errors)
        results.append({"file": path, "ok": not errors,
                        **({"role": cfg.node.role, "name": cfg.node.name} if cfg else {}),
                        "problems": [{"field": e.field, "why": e.reason, "line": str(e)} for e in errors]})
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["ok"]:
                click.echo(f"{result['file']}: ok ({result['role']} {result['name']})")
            for problem in result["problems"]:
                click.echo(problem["line"], err=True)
    if failed:
        sys.exit(1)


@main.command()
@json_option
@click.pass_obj
def status(obj: Context, as_json):
    """Show what a daemon is: role, uptime, programs and interfaces."""
    data = obj.call("status")

    def table(d):
        lines = [f"{k:<10} {v}" for k, v in d.items() if k != "attached" and not isinstance(v, (dict, list))]
        lines.append("attached   " + ", ".join(f"{a['program']} on {a['interface']}" for a in d.get("attached", [])))
        if d.get("keys_in_grace"):
            lines.append("rotating   replaced keys still believed for " + ", ".join(d["keys_in_grace"]))
        for key, value in d.items():
            if isinstance(value, dict) and key != "limits":
                lines.append(f"{key:<10} " + ", ".join(f"{k}={v}" for k, v in value.items()))
        for peer in d.get("liveness", []):          # heartbeats (RFC 5847)
            heard = "never answered" if peer["last_heard_ago"] is None else f"answered {peer['last_heard_ago']} s ago"
            lines.append(f"liveness   {peer['kind']} {peer['peer']}: {peer['state']} for {peer['since']} s, "
                         f"{heard}, {peer['missed']} missed")
        for name, t in d.get("limits", {}).items():
            # a table others fill: held/capacity (its config key), and what the limit did
            went = t["pushed_out"] if isinstance(t["pushed_out"], str) else ", ".join(
                f"{k}={v}" for k, v in {**t["pushed_out"], **t.get("refused", {})}.items()) or "nothing"
            lines.append(f"limit      {name} {t['held']}/{t['capacity']} ({t['setting']}); at the limit: {went}")
        return "\n".join(lines)
    emit(data, as_json, table)


@main.command()
@json_option
@click.pass_obj
def reload(obj: Context, as_json):
    """Read the daemon's config file again (as SIGHUP does) and apply the
    peers and their keys (key rotation), security.key_grace, [heartbeat] and
    a MAG's mn_ids, keeping every binding. Anything else waits for a restart."""
    data = obj.call("reload")

    def text(d):
        lines = [f"applied        {', '.join(d['applied']) or 'nothing changed'}"]
        for what in ("rotated", "added", "removed"):
            if d[f"keys_{what}"]:
                lines.append(f"keys {what:<9} {', '.join(d[f'keys_{what}'])}")
        if d["needs_restart"]:
            lines.append(f"needs restart  {', '.join(d['needs_restart'])} (changed in the file, not applied)")
        return "\n".join(lines)
    emit(data, as_json, text)


@main.command()
@json_option
@click.pass_obj
def bindings(obj: Context, as_json):
    """List bindings: the LMA's binding cache, or a MAG's binding update list."""
    data = obj.call("bindings")
    columns = [("mn_id", "mn-id"), ("state", "state"), ("hnp", "home prefix"), ("ipv4_hoa", "ipv4 hoa"),
               ("mag", "mag"), ("transport", "transport"), ("lifetime", "lifetime"), ("expires_in", "expires in")]
    emit(data, as_json, lambda rows: render_table(rows, [c for c in columns if any(c[0] in r for r in rows)]))


@main.command()
@json_option
@click.pass_obj
def peers(obj: Context, as_json):
    """List tunnels and the peers allowed to send through them."""
    data = obj.call("peers")
    emit(data, as_json, lambda rows: render_table(rows, [
        ("tunnel", "id"), ("encap", "encap"), ("local", "local"), ("remote", "remote"), ("port", "udp port"),
        ("users", "users")]))


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also show reasons that counted nothing.")
@json_option
@click.pass_obj
def counters(obj: Context, as_json, show_all):
    """Data-plane counters: packets and bytes per program, verdict and reason."""
    data = obj.call("counters")
    if not show_all:
        data = [row for row in data if row["packets"]]
    emit(data, as_json, lambda rows: render_table(rows, [
        ("program", "program"), ("verdict", "verdict"), ("reason", "reason"),
        ("packets", "packets"), ("bytes", "bytes")], empty="(no packets counted yet)"))


@main.command()
@json_option
@click.pass_obj
def signaling(obj: Context, as_json):
    """Mobility messages sent and received, by type and result."""
    data = obj.call("signaling")
    emit(data, as_json, lambda rows: render_table(rows, [
        ("type", "type"), ("direction", "direction"), ("result", "result"), ("count", "count")]))


@main.command()
@json_option
@click.pass_obj
def dataplane(obj: Context, as_json):
    """What the XDP maps hold now: MN prefixes, RO entries, tunnels, peers, local routes."""
    data = obj.call("tables")

    def table(d):
        parts = []
        for key, columns in (
                ("mobile_nodes", [("prefix", "prefix"), ("tunnel", "tunnel")]),
                ("ro_entries", [("local", "local"), ("remote", "remote"), ("tunnel", "tunnel"), ("state", "state")]),
                ("tunnels", [("tunnel", "id"), ("encap", "encap"), ("local", "local"), ("remote", "remote"),
                             ("dport", "udp port")]),
                ("peers", [("address", "address"), ("port", "port"), ("tunnel", "tunnel"), ("kind", "kind")])):
            parts.append(f"{key.replace('_', ' ')}:\n" + render_table(d[key], columns))
        if "local_routes" in d:                        # a MAG's (RFC 6705)
            parts.append("local routes:\n" + render_table(d["local_routes"], [
                ("local", "local"), ("remote", "remote"), ("ifindex", "onto ifindex")]))
        parts.append("routes: " + (", ".join(d["routes"]) or "(none)"))
        return "\n\n".join(parts)
    emit(data, as_json, table)


def _rates(before: list[dict], after: list[dict], seconds: float) -> tuple[list[dict], float | None]:
    """Per (program, verdict) packet and bit rates between two counter reads,
    and the share of MN bytes the MAG sent on optimized paths."""
    def totals(rows):
        out = {}
        for r in rows:
            key = (r["program"], r["verdict"])
            packets, octets = out.get(key, (0, 0))
            out[key] = (packets + r["packets"], octets + r["bytes"])
        return out

    old, new = totals(before), totals(after)
    rows = []
    for key in sorted(new):
        packets = new[key][0] - old.get(key, (0, 0))[0]
        octets = new[key][1] - old.get(key, (0, 0))[1]
        rows.append({"program": key[0], "verdict": key[1], "pps": round(packets / seconds),
                     "mbps": round(octets * 8 / seconds / 1e6, 2)})
    by_reason = {(r["program"], r["reason"]): r["bytes"] for r in after}
    was = {(r["program"], r["reason"]): r["bytes"] for r in before}
    ro = by_reason.get(("mag_access", "fwd_encap_ro"), 0) - was.get(("mag_access", "fwd_encap_ro"), 0)
    lma = by_reason.get(("mag_access", "fwd_encap_pmip"), 0) - was.get(("mag_access", "fwd_encap_pmip"), 0)
    return rows, (ro / (ro + lma) if ro + lma else None)


@main.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--iterations", type=int, help="Stop after this many refreshes (default: until Ctrl-C).")
@click.pass_obj
def top(obj: Context, interval, iterations):
    """Live data-plane rates per program and verdict, and the RO share: the
    part of the MNs' bytes that bypasses the LMA (MAGs). Refreshes in place."""
    import time

    nodes = [obj.node] if obj.node or obj.socket else list(daemon_sockets())
    if not nodes:
        raise click.ClickException(f"no daemon is running (no control socket in {RUN_DIR} or {LAB_RUN_DIR})")

    def read():
        return {node: Context(node, obj.socket).call("counters") for node in nodes}

    previous, stamp, shown = read(), time.monotonic(), 0
    try:
        while iterations is None or shown < iterations:
            time.sleep(interval)
            current, now = read(), time.monotonic()
            lines = [f"pmip6ctl top — every {interval:g} s (Ctrl-C to quit)", ""]
            for node in nodes:
                rows, share = _rates(previous[node], current[node], now - stamp)
                headline = f"{node}: RO share {share:.0%} of MN bytes" if share is not None else f"{node}:"
                lines += [headline, render_table([r for r in rows if r["pps"]] or rows[:0], [
                    ("program", "program"), ("verdict", "verdict"), ("pps", "packets/s"), ("mbps", "Mbit/s")],
                    empty="  (idle)"), ""]
            if sys.stdout.isatty():
                click.echo("\x1b[H\x1b[2J", nl=False)     # home and clear: refresh in place
            click.echo("\n".join(lines))
            previous, stamp, shown = current, now, shown + 1
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="The bundle (default: ./pmip6ctl-debuginfo-NODE-TIME.tar.gz).")
@click.option("--log-lines", default=500, show_default=True, type=click.IntRange(min=0),
              help="How many of the log's last lines to include.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False),
              help="The daemon's log file (default: the lab's log, or journald's lines for its pid).")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="The node's config file (default: the one the daemon says it runs with).")
@click.pass_obj
def debuginfo(obj: Context, output, log_lines, log_file, config_path):
    """Write a support bundle (tar.gz) for one node: versions, its config
    without key material, status, bindings, peers, counters, signaling, map
    dumps, RO pairs, metrics and its log's last lines. Key files are never read."""
    import time

    from .debuginfo import collect, write_bundle

    path = obj.socket_path()
    if log_file is None and path.parent.name.startswith("lab") and path.parent.parent == RUN_DIR:
        lab_log = path.parent / "logs" / f"{path.stem}.log"          # the lab keeps its logs there
        log_file = lab_log if lab_log.exists() else None
    files = collect(path, log_lines=log_lines, log_file=Path(log_file) if log_file else None,
                    config=Path(config_path) if config_path else None)
    name = obj.node or path.stem
    top = f"pmip6ctl-debuginfo-{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    target = write_bundle(files, Path(output or f"{top}.tar.gz"), top)
    problems = files["errors.txt"].decode().strip()
    if global_json():
        click.echo(json.dumps({"bundle": str(target), "files": sorted(files),
                               "missing": [] if problems == "(none)" else problems.splitlines()}, indent=2))
    else:
        click.echo(f"{target}: {len(files)} files")
        if problems != "(none)":
            for line in problems.splitlines():
                click.echo(f"  missing: {line}", err=True)
    if "status.json" not in files:       # written anyway: versions, config and log may help
        raise click.ClickException(f"the daemon on {path} did not answer; {target} holds what could be had")


@main.group()
def mn():
    """Attach or detach a mobile node at a MAG by hand (RS detection does it automatically)."""


@mn.command()
@click.argument("mn_id")
@click.option("--link", required=True, help="The MAG's access interface the MN is on.")
@click.option("--mac", help="The MN's link-layer address (for the log and the binding list).")
@json_option
@click.pass_obj
def attach(obj: Context, mn_id, link, mac, as_json):
    """Register MN_ID (an NAI, e.g. mn1@example.net) with the LMA."""
    data = obj.call("attach", mn_id=mn_id, link=link, mac=mac)
    emit(data, as_json, lambda d: f"{d['mn_id']}: {d['state']}")


@mn.command()
@click.argument("mn_id")
@json_option
@click.pass_obj
def detach(obj: Context, mn_id, as_json):
    """Deregister MN_ID and remove its routes and data-plane entries."""
    data = obj.call("detach", mn_id=mn_id)
    emit(data, as_json, lambda d: f"{d['mn_id']}: detached")


def key_values(data: dict) -> str:
    """A settings-and-counts answer, one `key value` line each."""
    return "\n".join(f"{k:<15} {v}" for k, v in data.items())


@mn.command(name="buffer")
@click.option("--on/--off", "enabled", default=None,
              help="Hold an arriving MN's packets while its PBU is in flight, or drop them (not saved to the config).")
@json_option
@click.pass_obj
def mn_buffer(obj: Context, enabled, as_json):
    """Show or switch a MAG's handover buffer: its settings and what it held, released and dropped."""
    emit(obj.call("buffer_settings", enabled=enabled), as_json, key_values)


@mn.command(name="hold")
@click.option("--on/--off", "enabled", default=None,
              help="Hold what arrives for an MN between MAGs, or let it go as RFC 5213 does (not saved to the config).")
@json_option
@click.pass_obj
def mn_hold(obj: Context, enabled, as_json):
    """Show or switch an LMA's downlink hold: its settings, the MNs between MAGs, what it held, released and dropped."""
    emit(obj.call("hold_settings", enabled=enabled), as_json, key_values)


@main.group(name="ro")
def ro_group():
    """Route optimization (the draft): list, start and stop optimized MN⇄CN pairs."""


RO_COLUMNS = [("local", "mn / local"), ("remote", "cn / remote"), ("peer", "peer"), ("transport", "tunnel"), ("phase", "phase"),
              ("mode", "mode"), ("roles", "roles"), ("expires_in", "expires in"), ("last_failure", "last failure")]


@ro_group.command(name="list")
@json_option
@click.pass_obj
def ro_list(obj: Context, as_json):
    """Every pair: installed RO entries and attempts in progress or backing off."""
    data = obj.call("ro_list")
    emit(data, as_json, lambda rows: render_table(rows, [c for c in RO_COLUMNS if any(c[0] in r for r in rows)]))


@ro_group.command(name="show")
@click.argument("mn")
@click.argument("cn")
@json_option
@click.pass_obj
def ro_show(obj: Context, mn, cn, as_json):
    """One pair in detail."""
    row = next((r for r in obj.call("ro_list") if (r["local"], r["remote"]) in ((mn, cn), (cn, mn))), None)
    if row is None:
        raise click.ClickException(f"no route optimization for {mn} ⇄ {cn}")
    def detail(r):
        lines = [f"{k:<13} {v}" for k, v in r.items() if k != "timeline"]
        if r.get("timeline"):
            lines.append("timeline")
            lines += [f"  {ms:>9.2f} ms  {what}" for ms, what in r["timeline"]]
        return "\n".join(lines)
    emit(row, as_json, detail)


@ro_group.command(name="start")
@click.argument("mn")
@click.argument("cn")
@json_option
@click.pass_obj
def ro_start(obj: Context, mn, cn, as_json):
    """Optimize MN → CN now (also cuts a retry backoff short). Runs at MN's MAG."""
    data = obj.call("ro_start", mn=mn, cn=cn)
    emit(data, as_json, lambda r: f"{r['local']} ⇄ {r['remote']}: {r.get('phase')}")


@ro_group.command(name="stop")
@click.argument("mn")
@click.argument("cn")
@json_option
@click.pass_obj
def ro_stop(obj: Context, mn, cn, as_json):
    """Deregister the pair at the peer and return the flow to the LMA path."""
    data = obj.call("ro_stop", mn=mn, cn=cn)
    emit(data, as_json, lambda r: f"{r['local']} ⇄ {r['remote']}: stopped")


@ro_group.command(name="settings")
@click.option("--trigger", "trigger_packets", type=click.IntRange(min=0),
              help="Start RO once a flow has sent this many packets (0: only `ro start`).")
@click.option("--mode", type=click.Choice(["rr", "quick"]),
              help="Return routability, or quick mode with peers that share a key (draft §2.2).")
@click.option("--lifetime", type=click.IntRange(4, MAX_RR_BINDING_LIFETIME),
              help="Lifetime asked for new RO bindings, seconds.")
@json_option
@click.pass_obj
def ro_settings(obj: Context, trigger_packets, mode, lifetime, as_json):
    """Show or change a MAG's RO trigger threshold, mode and lifetime (not saved to its config)."""
    data = obj.call("ro_settings", trigger_packets=trigger_packets, mode=mode, lifetime=lifetime)
    emit(data, as_json, lambda d: "\n".join(f"{k:<17} {v}" for k, v in d.items()))


from .lab.cli import lab  # noqa: E402  (the lab's commands live next to it)

main.add_command(lab)
