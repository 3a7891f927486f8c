"""A test network of N "hosts" on one Linux machine, each a network namespace with its own IP.

Every host is a namespace ``<prefix>h<i>`` holding ``lo`` and ``eth0`` (address ``10.213.0.<i+1>/24``
by default). The ``eth0`` of each host is one end of a veth pair whose other end sits on a bridge in
a separate switch namespace ``<prefix>sw``. Every interface and address lives inside namespaces made
here: the machine's own network namespace gets nothing, and the hosts have no route beyond their
/24, so traffic can only reach the other hosts of the same network.

Teardown deletes exactly the namespaces this module created (their names start with a unique
prefix); deleting a namespace deletes its veth ends and addresses. Processes started in a host
through :meth:`TestNetwork.popen` are stopped first, by their process group.

Needs root (CAP_NET_ADMIN) and iproute2's ``ip``; :func:`unavailable_reason` says why not.

Library use (also as a pytest fixture, see ``tests/test_scaleout_fleet.py``)::

    with TestNetwork.create(2) as net:
        net.run(net.hosts[0], ["ip", "-br", "addr"])

Command line, for shell chains that keep a network across several steps::

    python -m mobilenetv3_tipc.tipc.netns up --hosts 2 --prefix mtipc-fleet-    # prints "NAME IP IFNAME" per host
    python -m mobilenetv3_tipc.tipc.netns exec mtipc-fleet-h0 -- python -c 'print(1)'
    python -m mobilenetv3_tipc.tipc.netns which 10.213.0.2      # "mtipc-fleet-h1 10.213.0.2 eth0", or exit 1
    python -m mobilenetv3_tipc.tipc.netns down --prefix mtipc-fleet-            # also removes leftovers of a crash
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mobilenetv3_tipc.cli import setup_logging

logger = logging.getLogger("netns")

DEFAULT_SUBNET = "10.213.0.0/24"
HOST_IFNAME = "eth0"
PREFIX_STEM = "mtipc-"
# Seconds one `ip` call may take; they normally take milliseconds.
IP_TIMEOUT = 30

_LIVE: list[TestNetwork] = []


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message holds the command and its stderr."""


@dataclass(frozen=True)
class Host:
    """One namespace host: its namespace name, its address on the test network, its interface."""

    name: str
    ip: str
    ifname: str = HOST_IFNAME


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    return None


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def list_namespaces(prefix: str = "") -> list[str]:
    """Names of the machine's network namespaces that start with ``prefix``."""
    out = _ip("netns", "list").stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [name for name in names if name.startswith(prefix)]


def new_prefix(stem: str = PREFIX_STEM) -> str:
    """A prefix no other network uses: ``mtipc-<8 hex>-``."""
    return f"{stem}{uuid.uuid4().hex[:8]}-"


def namespace_pids(name: str) -> list[int]:
    """PIDs of the processes that run inside namespace ``name``."""
    result = _ip("netns", "pids", name, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


@dataclass
class TestNetwork:
    """N hosts on one bridge; see the module docstring."""

    __test__ = False  # not a pytest test class

    prefix: str
    hosts: list[Host]
    switch: str
    created: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls, count: int, prefix: str | None = None, subnet: str = DEFAULT_SUBNET,
               register_atexit: bool = True) -> TestNetwork:
        """Make ``count`` hosts; on any failure remove what was made so far and raise."""
        if count < 1:
            raise ValueError("a test network needs at least one host")
        reason = unavailable_reason()
        if reason:
            raise NetnsError(reason)
        prefix = prefix or new_prefix()
        network = ipaddress.ip_network(subnet)
        addresses = list(network.hosts())
        if count > len(addresses):
            raise ValueError(f"subnet {subnet} has room for {len(addresses)} hosts, not {count}")
        existing = list_namespaces(prefix)
        if existing:
            raise NetnsError(f"namespaces with prefix {prefix!r} exist already: {', '.join(existing)}; "
                             f"remove them with `python -m mobilenetv3_tipc.tipc.netns down --prefix {prefix}`")
        net = cls(prefix=prefix, hosts=[], switch=f"{prefix}sw")
        if register_atexit:
            _LIVE.append(net)
        try:
            net._add_namespace(net.switch)
            _ip("link", "add", "br0", "type", "bridge", netns=net.switch)
            _ip("link", "set", "br0", "up", netns=net.switch)
            for i in range(count):
                host = Host(name=f"{prefix}h{i}", ip=str(addresses[i]))
                net._add_namespace(host.name)
                port = f"p{i}"
                # Both veth ends are created directly inside their namespaces.
                _ip("link", "add", host.ifname, "netns", host.name, "type", "veth",
                    "peer", "name", port, "netns", net.switch)
                _ip("link", "set", port, "master", "br0", netns=net.switch)
                _ip("link", "set", port, "up", netns=net.switch)
                _ip("addr", "add", f"{host.ip}/{network.prefixlen}", "dev", host.ifname, netns=host.name)
                _ip("link", "set", host.ifname, "up", netns=host.name)
                net.hosts.append(host)
        except BaseException:
            net.teardown()
            raise
        logger.info("test network %s: %s", prefix, ", ".join(f"{h.name}={h.ip}" for h in net.hosts))
        return net

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("link", "set", "lo", "up", netns=name)

    # ------------------------------------------------------------------ running commands
    @staticmethod
    def exec_prefix(host: Host | str) -> list[str]:
        """The argv prefix that runs a command inside ``host``."""
        return ["ip", "netns", "exec", host.name if isinstance(host, Host) else host]

    def run(self, host: Host | str, cmd: Sequence[str], *, timeout: float = 60,
            env: Mapping[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in ``host`` to completion (text output captured unless told otherwise)."""
        kwargs.setdefault("capture_output", True)
        return subprocess.run([*self.exec_prefix(host), *cmd], text=True, timeout=timeout, check=False,
                              env=dict(env) if env is not None else None, **kwargs)

    def popen(self, host: Host | str, cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
              **kwargs) -> subprocess.Popen:
        """Start ``cmd`` in ``host`` in a new process group that :meth:`teardown` stops if still running."""
        proc = subprocess.Popen([*self.exec_prefix(host), *cmd], env=dict(env) if env is not None else None,
                                start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def set_link(self, host: Host, up: bool) -> None:
        """Plug ``host``'s cable in or out (its eth0 up or down): down makes it unreachable."""
        _ip("link", "set", host.ifname, "up" if up else "down", netns=host.name)

    # ------------------------------------------------------------------ teardown
    def stop_processes(self, grace: float = 5.0) -> None:
        """SIGTERM then SIGKILL the process groups started by :meth:`popen` that still run."""
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()

    def teardown(self) -> list[str]:
        """Remove every namespace this network created; returns those that could not be removed."""
        self.stop_processes()
        leftovers = []
        for name in reversed(self.created):
            # Anything still running inside our namespace descends from a command we started there.
            for pid in namespace_pids(name):
                _kill(pid)
            if _ip("netns", "del", name, check=False).returncode != 0 and name in list_namespaces(name):
                leftovers.append(name)
        self.created = leftovers
        if self in _LIVE and not leftovers:
            _LIVE.remove(self)
        if leftovers:
            logger.error("could not remove namespaces: %s", ", ".join(leftovers))
        return leftovers

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def hosts_of(ip: str, prefix: str = PREFIX_STEM) -> list[Host]:
    """Every namespace host (made here, name starting with ``prefix``) that owns address ``ip``.

    Loopback addresses are never a host's: every namespace has its own ``127.0.0.1``.
    """
    if ipaddress.ip_address(ip).is_loopback:
        return []
    found = []
    for name in list_namespaces(prefix):
        for line in _ip("-o", "-4", "addr", "show", netns=name, check=False).stdout.splitlines():
            words = line.split()
            # "2: eth0    inet 10.213.0.1/24 brd ... scope global eth0"
            if len(words) > 3 and words[2] == "inet" and words[3].split("/")[0] == ip:
                found.append(Host(name=name, ip=ip, ifname=words[1].split("@")[0]))
    return found


def host_of(ip: str, prefix: str = PREFIX_STEM) -> Host | None:
    """The first namespace host (made here, name starting with ``prefix``) that owns address ``ip``, if any."""
    found = hosts_of(ip, prefix)
    return found[0] if found else None


def remove_prefix(prefix: str) -> list[str]:
    """Remove every namespace whose name starts with ``prefix`` (and the processes inside it)."""
    if not prefix.startswith(PREFIX_STEM):
        raise ValueError(f"refusing to remove namespaces not made here: prefix must start with {PREFIX_STEM!r}")
    net = TestNetwork(prefix=prefix, hosts=[], switch=f"{prefix}sw", created=sorted(list_namespaces(prefix)))
    removed = list(net.created)
    leftovers = net.teardown()
    return [name for name in removed if name not in leftovers]


@atexit.register
def _teardown_live_networks() -> None:
    for net in list(_LIVE):
        net.teardown()


# ---------------------------------------------------------------------- command line
def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mobilenetv3_tipc.tipc.netns",
                                     description="namespace hosts for scale-out tests")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create N hosts; prints 'NAME IP IFNAME' per host")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--prefix", default=None, help=f"namespace name prefix, starting with {PREFIX_STEM!r} "
                                                   "(default: a new unique one)")
    up.add_argument("--subnet", default=DEFAULT_SUBNET)
    run = sub.add_parser("exec", help="run a command in a host: exec NAME -- CMD ...")
    run.add_argument("name")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    which = sub.add_parser("which", help="print 'NAME IP IFNAME' of the host that owns IP; exit 1 if none")
    which.add_argument("ip")
    which.add_argument("--prefix", default=PREFIX_STEM, help="only hosts of this network")
    down = sub.add_parser("down", help="remove every namespace with this prefix")
    down.add_argument("--prefix", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_args_parser().parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"SKIPPED: {reason}", file=sys.stderr)
        return 77
    try:
        if args.command == "up":
            if args.prefix and not args.prefix.startswith(PREFIX_STEM):
                print(f"error: --prefix must start with {PREFIX_STEM!r}", file=sys.stderr)
                return 2
            net = TestNetwork.create(args.hosts, prefix=args.prefix, subnet=args.subnet, register_atexit=False)
            for host in net.hosts:
                print(host.name, host.ip, host.ifname)
            return 0
        if args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                print("error: exec needs a command after --", file=sys.stderr)
                return 2
            if args.name not in list_namespaces(args.name):
                print(f"error: no namespace {args.name!r}", file=sys.stderr)
                return 2
            os.execvp("ip", [*TestNetwork.exec_prefix(args.name), *cmd])
        if args.command == "which":
            host = host_of(args.ip, args.prefix)
            if host is None:
                return 1
            print(host.name, host.ip, host.ifname)
            return 0
        removed = remove_prefix(args.prefix)
        left = list_namespaces(args.prefix)
        print(f"removed {len(removed)} namespaces" + (f"; left: {', '.join(left)}" if left else ""),
              file=sys.stderr)
        return 1 if left else 0
    except (NetnsError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
