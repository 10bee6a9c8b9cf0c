"""A small internet inside the machine, built from network namespaces, for the NAT tests.

::

    [ hA ]──10.0.1.0/24──[ rA ]──┐                              ┌──[ rB ]──10.0.2.0/24──[ hB ]
     host    (LAN A)     router  │  "public" 203.0.113.0/24     │  router    (LAN B)    host
                         NAT     └───────[ br0 in pub ]─────────┘  NAT
                                       signal server + coturn
                                         at 203.0.113.10

Routers masquerade their LAN: ``cone`` keeps source ports where it can (endpoint-independent
mapping in practice), ``symmetric`` uses ``--random-fully`` (a new port per destination).
Two lessons from building this here: a router must drop unsolicited packets
addressed to itself, or conntrack port clashes break hole punching; and the public namespace
needs a default route (to a gateway that need not exist) or coturn's relay fails with
"Network is unreachable". Everything lives in namespaces this module creates and deletes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cli_helpers import ROOT

PUBLIC_IP = "203.0.113.10"
TURN_SECRET = "natlab-secret"


class LabError(RuntimeError):
    """The machine cannot build the lab (not root, no iproute2/iptables/coturn)."""


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise LabError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    prefix: str
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    workdir: Path = field(default_factory=Path)

    def ns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def add_ns(self, name: str) -> str:
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        return ns

    def veth(self, a: str, ns_a: str, b: str, ns_b: str) -> None:
        sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)

    def spawn(self, ns: str, args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


def _build_public(lab: Lab) -> str:
    pub = lab.add_ns("pub")
    sh("ip", "link", "add", "br0", "type", "bridge", ns=pub)
    sh("ip", "addr", "add", f"{PUBLIC_IP}/24", "dev", "br0", ns=pub)
    sh("ip", "link", "set", "br0", "up", ns=pub)
    # coturn's relay needs a default route, even to a gateway that does not exist.
    sh("ip", "route", "add", "default", "via", "203.0.113.254", "dev", "br0", "onlink", ns=pub)
    return pub


def _build_home(lab: Lab, pub: str, index: int, nat: str, block_udp: bool) -> str:
    """A router doing NAT for a LAN with one host; returns the host's namespace."""
    router, host = lab.add_ns(f"r{index}"), lab.add_ns(f"h{index}")
    wan, _lan = f"{lab.prefix}w{index}", f"{lab.prefix}l{index}"
    lab.veth("wan", router, wan, pub)
    sh("ip", "link", "set", wan, "master", "br0", ns=pub)
    sh("ip", "link", "set", wan, "up", ns=pub)
    lab.veth("lan", router, "eth0", host)
    sh("ip", "addr", "add", f"203.0.113.{index}/24", "dev", "wan", ns=router)
    sh("ip", "addr", "add", f"10.0.{index}.1/24", "dev", "lan", ns=router)
    sh("ip", "addr", "add", f"10.0.{index}.2/24", "dev", "eth0", ns=host)
    for dev, ns in (("wan", router), ("lan", router), ("eth0", host)):
        sh("ip", "link", "set", dev, "up", ns=ns)
    sh("ip", "route", "add", "default", "via", f"10.0.{index}.1", ns=host)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=router)
    masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
    if nat == "symmetric":
        masquerade.append("--random-fully")
    sh(*masquerade, ns=router)
    # Unsolicited packets to the router itself are dropped (see the module docstring); from
    # the outside only replies to what the LAN started get in.
    sh("iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP", ns=router)
    sh(
        "iptables",
        "-A",
        "FORWARD",
        "-i",
        "wan",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
        ns=router,
    )
    sh("iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP", ns=router)
    if block_udp:
        sh("iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP", ns=router)
    return host


def _start_coturn(lab: Lab, pub: str) -> None:
    conf = lab.workdir / "turnserver.conf"
    conf.write_text(
        "\n".join(
            [
                f"listening-ip={PUBLIC_IP}",
                f"relay-ip={PUBLIC_IP}",
                "listening-port=3478",
                "min-port=40000",
                "max-port=49999",
                "use-auth-secret",
                f"static-auth-secret={TURN_SECRET}",
                "realm=p2pshare.lab",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                "no-multicast-peers",
                "simple-log",
                "log-file=stdout",
                f"pidfile={lab.workdir / 'turnserver.pid'}",
                f"userdb={lab.workdir / 'turndb'}",
                "",
            ]
        )
    )
    proc = lab.spawn(
        pub,
        ["turnserver", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Total General servers" in line:  # listeners are open
            break
    else:
        raise LabError("coturn did not start")
    # Keep reading its log so that it never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()


def _start_signal(lab: Lab, pub: str, *args: str) -> str:
    proc = lab.spawn(
        pub,
        [
            sys.executable,
            "-m",
            "signal_server",
            "--host",
            PUBLIC_IP,
            "--port",
            "0",
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line: str = proc.stdout.readline()
    if not line.startswith("listening on"):
        raise LabError("the signal server did not start in the lab")
    return line.split()[-1]


PUBLIC_NAMES = ("relay.magic-wormhole.io", "stun.cloudflare.com")
"""The host names of p2pshare's public defaults (p2pshare/config.py), which a lab points at
its own servers (:func:`public_defaults`)."""
MAILBOX_PORT = 4000
"""Where magic-wormhole's public mailbox answers plain websockets (its older URL)."""


def lab_ca(workdir: Path, names: Sequence[str]) -> tuple[Path, Path, Path]:
    """A lab certificate authority and a server certificate for ``names`` signed by it;
    returns the CA's PEM (for ``SSL_CERT_FILE``), the certificate and its key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pshare lab CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (workdir / "lab-ca.pem", workdir / "relay.pem", workdir / "relay.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _start_mailbox(lab: Lab, pub: str, tls: bool, args: Sequence[str] = ()) -> None:
    """The real magic-wormhole mailbox server: with ``tls``, reachable only through a TLS
    front on PUBLIC_IP:443 (``wss://``, a certificate from :func:`lab_ca`); without, on
    PUBLIC_IP:MAILBOX_PORT only (plain ``ws://``, the older URL), 443 closed."""
    behind = "127.0.0.1" if tls else PUBLIC_IP
    proc = lab.spawn(
        pub,
        [
            str(Path(sys.executable).parent / "twist"),
            "wormhole-mailbox",
            f"--port=tcp:{MAILBOX_PORT}:interface={behind}",
            f"--channel-db={lab.workdir / 'mailbox.sqlite'}",
            *args,
        ],
        cwd=lab.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Site starting on" in line:
            break
    else:
        raise LabError("the mailbox server did not start in the lab")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    _ca, cert, key = lab_ca(lab.workdir, PUBLIC_NAMES)
    if not tls:
        return
    front = lab.spawn(
        pub,
        [
            sys.executable,
            "-m",
            "tests.tls_front",
            PUBLIC_IP,
            "443",
            str(cert),
            str(key),
            behind,
            str(MAILBOX_PORT),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert front.stdout is not None
    if front.stdout.readline().strip() != "ready":
        raise LabError("the TLS front did not start in the lab")


@contextmanager
def public_names(namespaces: Sequence[str]) -> Iterator[None]:
    """Point the public defaults' host names at the lab's public server inside
    ``namespaces``: ``ip netns exec`` lays ``/etc/netns/NAME/hosts`` over ``/etc/hosts``."""
    made: list[Path] = []
    try:
        for ns in namespaces:
            directory = Path("/etc/netns") / ns
            directory.mkdir(parents=True, exist_ok=True)
            made.append(directory)
            lines = ["127.0.0.1 localhost", f"{PUBLIC_IP} {' '.join(PUBLIC_NAMES)}", ""]
            (directory / "hosts").write_text("\n".join(lines))
        yield
    finally:
        for directory in made:
            (directory / "hosts").unlink(missing_ok=True)
            directory.rmdir()


@dataclass(frozen=True)
class Internet:
    """What a test needs: where the two hosts are and which server to use."""

    lab: Lab
    host_a: str
    host_b: str
    server: str

    @property
    def stun(self) -> str:
        return f"stun:{PUBLIC_IP}:3478"


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the NAT lab needs root (network namespaces and iptables)")
    for tool in ("ip", "iptables", "ethtool", "turnserver"):
        if sh("sh", "-c", f"command -v {tool}", check=False).returncode:
            raise LabError(f"the NAT lab needs {tool}: run scripts/install-system-deps")


@contextmanager
def internet(
    workdir: Path,
    nat_a: str = "cone",
    nat_b: str = "cone",
    *,
    block_udp: bool = False,
    server_args: Sequence[str] = (),
    public_defaults: str | None = None,
    mailbox_args: Sequence[str] = (),
) -> Iterator[Internet]:
    """Two homes behind NATs, a public network with coturn and p2pshare-signal. With
    ``public_defaults`` (``"tls"`` or ``"plain"``, see :func:`_start_mailbox`) the public
    network also runs the real mailbox server (with ``mailbox_args``) and answers, for both
    hosts, to the names of p2pshare's public defaults: the mailbox and STUN (coturn); the
    hosts trust the lab CA through ``SSL_CERT_FILE`` (``workdir / "lab-ca.pem"``)."""
    _check_prerequisites()
    lab = Lab(prefix=f"p2p{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        pub = _build_public(lab)
        host_a = _build_home(lab, pub, 1, nat_a, block_udp)
        host_b = _build_home(lab, pub, 2, nat_b, block_udp)
        _start_coturn(lab, pub)
        server = _start_signal(lab, pub, *server_args)
        if public_defaults:
            _start_mailbox(lab, pub, tls=public_defaults == "tls", args=mailbox_args)
            stack.enter_context(public_names([host_a, host_b]))
        yield Internet(lab, host_a, host_b, server)


@contextmanager
def one_lan(workdir: Path) -> Iterator[tuple[Lab, str, str]]:
    """Two hosts on one Ethernet segment, no router, no servers at all."""
    _check_prerequisites()
    lab = Lab(prefix=f"p2p{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        switch = lab.add_ns("sw")
        sh("ip", "link", "add", "br0", "type", "bridge", ns=switch)
        sh("ip", "link", "set", "br0", "up", ns=switch)
        hosts = []
        for index in (1, 2):
            host = lab.add_ns(f"h{index}")
            port = f"{lab.prefix}p{index}"
            lab.veth("eth0", host, port, switch)
            sh("ip", "link", "set", port, "master", "br0", ns=switch)
            sh("ip", "link", "set", port, "up", ns=switch)
            sh("ip", "addr", "add", f"10.9.0.{index}/24", "dev", "eth0", ns=host)
            sh("ip", "link", "set", "eth0", "up", ns=host)
            hosts.append(host)
        yield lab, hosts[0], hosts[1]


@contextmanager
def lossy_link(workdir: Path, loss_pct: float) -> Iterator[tuple[Lab, str, str]]:
    """Two hosts joined by one cable (a veth pair) that loses ``loss_pct`` % of the packets
    arriving at each end. Host A is 10.8.0.1, host B 10.8.0.2.

    Loss comes from iptables' ``statistic`` match, not ``tc netem``: the kernels of this
    project's machines ship without the netem qdisc (and without loadable modules), so netem
    delay is not available either.
    """
    _check_prerequisites()
    lab = Lab(prefix=f"p2p{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        host_a, host_b = lab.add_ns("a"), lab.add_ns("b")
        lab.veth("eth0", host_a, "eth0", host_b)
        for index, ns in ((1, host_a), (2, host_b)):
            sh("ip", "addr", "add", f"10.8.0.{index}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            sh(
                "iptables",
                "-A",
                "INPUT",
                "-i",
                "eth0",
                "-p",
                "udp",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{loss_pct / 100:.4f}",
                "-j",
                "DROP",
                ns=ns,
            )
        yield lab, host_a, host_b


@contextmanager
def delayed_link(workdir: Path, delay_s: float, loss_pct: float) -> Iterator[tuple[Lab, str, str]]:
    """Two hosts joined by a cable that delays every packet by ``delay_s`` and loses
    ``loss_pct`` % of them, each way: ``tests/tun_link.py`` copies packets between a TUN
    device in each namespace (user-space netem). Host A is 10.9.0.1, host B 10.9.0.2."""
    _check_prerequisites()
    lab = Lab(prefix=f"p2d{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        host_a, host_b = lab.add_ns("a"), lab.add_ns("b")
        link = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.tun_link",
                host_a,
                host_b,
                str(delay_s),
                str(loss_pct / 100),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        lab.processes.append(link)
        assert link.stdout is not None
        if link.stdout.readline().strip() != "ready":
            raise LabError("the delaying link did not start")
        for ns, dev, here, there in ((host_a, "tunA", 1, 2), (host_b, "tunB", 2, 1)):
            sh("ip", "addr", "add", f"10.9.0.{here}", "peer", f"10.9.0.{there}", "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        yield lab, host_a, host_b


def public_network(lab: Lab) -> str:
    """The "public" namespace with its bridge at 203.0.113.0/24 (no servers started)."""
    return _build_public(lab)


def home(lab: Lab, pub: str, index: int, nat: str, block_udp: bool = False) -> str:
    """A host at 10.0.INDEX.2 behind a router (203.0.113.INDEX) doing ``nat``; returns the
    host's namespace."""
    return _build_home(lab, pub, index, nat, block_udp)


def check_prerequisites(*tools: str) -> None:
    """Root, the lab's usual tools and ``tools``, or a LabError naming what is missing."""
    _check_prerequisites()
    for tool in tools:
        if sh("sh", "-c", f"command -v {tool}", check=False).returncode:
            raise LabError(f"the lab needs {tool}: run scripts/install-system-deps")
