"""`pmip6ctl lab ...`: the one-machine lab of DESIGN §5."""

from __future__ import annotations

import json

import click

from .netlab import LabError


def _lab(prefix: str):
    from .runner import Lab
    return Lab(prefix=prefix, progress=lambda line: click.echo(f"  {line}", err=True))


@click.group()
@click.option("--prefix", default="pmip-", show_default=True, help="Namespace name prefix.")
@click.pass_context
def lab(ctx, prefix):
    """Build a PMIPv6 domain in network namespaces on this machine and run it.

    \b
    pmip6ctl lab up       namespaces, veths, daemons (waits until all are ready)
    pmip6ctl lab demo     MNs attach, traffic flows; before/after route optimization
    pmip6ctl lab status   what is up and running
    pmip6ctl lab down     remove everything the lab made
    """
    ctx.obj = prefix


@lab.command()
@click.pass_obj
def up(prefix):
    """Build the lab and start its daemons."""
    try:
        _lab(prefix).up()
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("lab is up: try `pmip6ctl --node mag1 bindings` or `pmip6ctl lab demo`")


@lab.command()
@click.pass_obj
def down(prefix):
    """Stop the daemons and remove namespaces, pins, sockets and logs."""
    _lab(prefix).down()


@lab.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(prefix, as_json):
    """Show the lab's namespaces and daemons."""
    from ..cli import global_json

    data = _lab(prefix).status()
    if as_json or global_json():
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"namespaces: {', '.join(data['namespaces']) or '(none: the lab is down)'}")
    for node, info in data["daemons"].items():
        state = f"running (pid {info['pid']})" if info["running"] else "not running"
        click.echo(f"  {node:<6} {info['role']:<4} {state}{'  ' + info['error'] if 'error' in info else ''}")
    click.echo(f"logs: {data['logs']}")
    if data["namespaces"]:
        click.echo("metrics: " + ", ".join(f"{n} http://{a}/metrics" for n, a in _lab(prefix).metrics_targets().items()))


@lab.command()
@click.argument("state", type=click.Choice(["on", "off", "status"]))
@click.pass_obj
def nat(prefix, state):
    """Put MAG2 behind a real nftables NAT on IPv4 transport (on), or back (off).

    With the NAT on, MAG2 registers with the LMA in UDP through the NAT's
    mapping, keeps it alive with keepalives, and RO with MAG2 runs in UDP too.
    """
    lab = _lab(prefix)
    if not lab.namespaces():
        raise click.ClickException("the lab is down: pmip6ctl lab up")
    if state != "status":
        lab.set_nat(state == "on")
    click.echo(f"NAT in front of MAG2: {'on' if lab.nat_enabled() else 'off'}")


@lab.command()
@click.argument("lma", type=click.Choice(["lma", "lma2"]))
@click.pass_obj
def anchor(prefix, lma):
    """Make MAG2 register MN2 with LMA (default) or LMA2 (scenario 2: the MN
    and the CN anchored at different LMAs, which then ask each other)."""
    lab = _lab(prefix)
    if not lab.namespaces():
        raise click.ClickException("the lab is down: pmip6ctl lab up")
    lab.set_anchor(lma)
    click.echo(f"MAG2 registers with {lma}")


@lab.command()
@click.argument("mn", type=click.Choice(["mn1", "mn2"]))
@click.argument("mag", type=click.Choice(["mag1", "mag2", "mag3"]))
@click.pass_obj
def move(prefix, mn, mag):
    """Hand MN over to MAG: it leaves its access link and appears on the
    other (MAG3, or back to its home MAG). Route optimization follows."""
    lab = _lab(prefix)
    if not lab.namespaces():
        raise click.ClickException("the lab is down: pmip6ctl lab up")
    try:
        lab.move(mn, mag)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{mn} is at {mag}")


@lab.command(name="prometheus")
@click.pass_obj
def prometheus_config(prefix):
    """Print a Prometheus scrape config for the lab's daemons.

    
    pmip6ctl lab prometheus > /tmp/lab-prometheus.yml
    prometheus --config.file=/tmp/lab-prometheus.yml --web.listen-address=127.0.0.1:9090
    """
    click.echo(_lab(prefix).prometheus_config(), nl=False)


@lab.command()
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
@click.pass_obj
def demo(prefix, keep):
    """Bring the lab up (unless it is), attach the MNs and show traffic paths."""
    from .demo import run_demo
    try:
        run_demo(_lab(prefix), keep=keep)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
