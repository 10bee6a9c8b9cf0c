"""The self-host bundle (``deploy/``) run as shipped, inside network namespaces.

::

    [ h1 ]──[ r1 symmetric NAT ]──┐                        ┌──[ r2 symmetric NAT ]──[ h2 ]
                                  ├── "internet" 203.0.113.0/24 ──┤
    [ h3 ]──[ r3 cone NAT ]───────┘           │
                                 [ pub: the server, 203.0.113.10 = lab.p2pshare.test ]
                                   Caddy :443 (deploy/Caddyfile) -> p2pshare-signal
                                   127.0.0.1:4750 (deploy/run-signal), coturn :3478/:5349
                                   (deploy/turn-entrypoint, deploy/turnserver.conf)
                                   a "private side": 10.200.0.1/24 and 169.254.169.254

The bundle's own files run unchanged; the only input is an environment file in the
bundle's format (``p2pshare.env``) holding the lab's values: the domain, a TURN secret and
``P2PSHARE_TLS=files`` with a certificate from a lab CA, so Caddy never tries ACME (and the
namespaces have no way out anyway). Every host resolves the domain through
``/etc/netns/NS/hosts``; clients trust the lab CA through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cli_helpers import ROOT
from tests.natlab import PUBLIC_IP, Lab, LabError, check_prerequisites, home, public_network, sh

DEPLOY = ROOT / "deploy"
DOMAIN = "lab.p2pshare.test"
PRIVATE_IP = "10.200.0.1"
"""An address on the server's private side (a provider's internal network)."""
METADATA_IP = "169.254.169.254"
"""Where clouds answer metadata requests (with credentials) on every VM."""
SECOND_PUBLIC_IP = "203.0.113.20"
"""Another public address of the server machine: a target TURN may relay to."""
ECHO_PORT = 9999
START_TIMEOUT_S = 30.0


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile and compose's env_file both read them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"{path}: not a KEY=value line: {line!r}")
        values[key] = value
    return values


class LogWatcher:
    """Reads a process's output on a thread into a file, and lets a test wait for a line."""

    def __init__(self, stream: IO[str], path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with self.path.open("w") as log:
            for line in stream:
                log.write(line)
                log.flush()
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> str:
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: self._done or any(regex.search(line) for line in self.lines), timeout_s
            )
            match = next((line for line in self.lines if regex.search(line)), None)
        if not found or match is None:
            raise LabError(f"never logged {pattern!r}; see {self.path}")
        return match

    def wait_for_count(self, text: str, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until ``text`` appears in ``count`` lines."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: self._done or sum(text in line for line in self.lines) >= count,
                timeout_s,
            )
            seen = sum(text in line for line in self.lines)
        if not found or seen < count:
            raise LabError(f"{text!r} logged {seen} times, not {count}; see {self.path}")

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)


@dataclass(frozen=True)
class LabCA:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_lab_ca(folder: Path, name: str) -> LabCA:
    """A CA and a certificate for ``name`` signed by it (the lab's stand-in for ACME)."""
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
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(PUBLIC_IP))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    lab = LabCA(folder / "ca.pem", folder / "fullchain.pem", folder / "privkey.pem")
    lab.ca_file.write_bytes(ca.public_bytes(pem))
    lab.cert_file.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    lab.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return lab


@dataclass(frozen=True)
class BundleLab:
    lab: Lab
    pub: str
    hosts: tuple[str, str, str]
    """h1 and h2 behind symmetric NATs, h3 behind a port-preserving one."""
    ca: LabCA
    env: dict[str, str]
    """What the lab's p2pshare.env holds."""
    caddy: LogWatcher
    coturn: LogWatcher
    signal: LogWatcher

    @property
    def url(self) -> str:
        return f"wss://{DOMAIN}"

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client process's environment: trusts the lab CA, nothing else inherited that
        would change what p2pshare does."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
        env.update(SSL_CERT_FILE=str(self.ca.ca_file), PYTHONUNBUFFERED="1", **extra)
        return env


def _lab_env_file(folder: Path, ca: LabCA) -> Path:
    """The lab's p2pshare.env: the same keys a person fills in, with the lab's values."""
    path = folder / "p2pshare.env"
    path.write_text(
        "\n".join(
            [
                "# the test lab's values for the bundle's environment file",
                f"P2PSHARE_DOMAIN={DOMAIN}",
                f"P2PSHARE_TURN_SECRET={secrets.token_hex(32)}",
                f"P2PSHARE_TURN_RELAY_IP={PUBLIC_IP}",
                "P2PSHARE_TLS=files",
                f"P2PSHARE_TLS_CERT={ca.cert_file}",
                f"P2PSHARE_TLS_KEY={ca.key_file}",
                "",
            ]
        )
    )
    return path


def _name_the_server(stack: ExitStack, namespaces: list[str]) -> None:
    """``DOMAIN`` resolves to the server in every namespace (``ip netns exec`` lays
    ``/etc/netns/NS/hosts`` and ``resolv.conf`` over those in ``/etc``)."""
    for ns in namespaces:
        folder = Path("/etc/netns") / ns
        folder.mkdir(parents=True, exist_ok=True)
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        (folder / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{PUBLIC_IP} {DOMAIN}\n")
        # No DNS server in the lab: one that refuses at once, rather than the machine's own,
        # which a namespace cannot reach (Chromium then waits ~13 s per name before it
        # settles for the hosts file, longer than a page gathers candidates).
        (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def _server_side(lab: Lab, pub: str) -> None:
    """The server's private side and a second public address, with a UDP echo on all of
    them: what TURN must refuse to reach, and what it may."""
    # A veth pair stands in for the private network card (this kernel has no dummy links).
    sh("ip", "link", "add", "priv0", "type", "veth", "peer", "name", "priv1", ns=pub)
    sh("ip", "addr", "add", f"{PRIVATE_IP}/24", "dev", "priv0", ns=pub)
    sh("ip", "addr", "add", f"{METADATA_IP}/16", "dev", "priv0", ns=pub)
    sh("ip", "link", "set", "priv0", "up", ns=pub)
    sh("ip", "link", "set", "priv1", "up", ns=pub)
    sh("ip", "addr", "add", f"{SECOND_PUBLIC_IP}/24", "dev", "br0", ns=pub)
    echo = lab.spawn(
        pub,
        [
            sys.executable,
            "-m",
            "tests.lab_echo",
            str(ECHO_PORT),
            *(PUBLIC_IP, SECOND_PUBLIC_IP, PRIVATE_IP, METADATA_IP, "127.0.0.1"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert echo.stdout is not None
    if echo.stdout.readline().strip() != "ready":
        raise LabError("the lab's UDP echo did not start")


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM first: turn-entrypoint then stops its turnserver (a SIGKILL would orphan it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(
    stack: ExitStack,
    lab: Lab,
    ns: str,
    args: list[str],
    env: Mapping[str, str],
    log: Path,
    ready: str,
) -> LogWatcher:
    proc = lab.spawn(
        ns,
        args,
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack.callback(_stop, proc)
    assert proc.stdout is not None
    watcher = LogWatcher(proc.stdout, log)
    watcher.wait_for(ready)
    return watcher


@contextmanager
def bundle(workdir: Path, *signal_args: str) -> Iterator[BundleLab]:
    """The bundle on a server in the lab, three client homes, everything stopped after."""
    check_prerequisites("turnserver", "caddy")
    lab = Lab(prefix=f"p2b{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        pub = public_network(lab)
        hosts = (home(lab, pub, 1, "symmetric"), home(lab, pub, 2, "symmetric"))
        hosts3 = (*hosts, home(lab, pub, 3, "cone"))
        _name_the_server(stack, [pub, *hosts3])
        _server_side(lab, pub)
        ca = make_lab_ca(workdir / "tls", DOMAIN)
        env_file = _lab_env_file(workdir, ca)
        values = read_env_file(env_file)
        base = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
        base.update(values)

        caddy_home = workdir / "caddy"
        caddy_env = {
            **base,
            "HOME": str(caddy_home),
            "XDG_DATA_HOME": str(caddy_home / "data"),
            "XDG_CONFIG_HOME": str(caddy_home / "config"),
        }
        caddy = _start(
            stack,
            lab,
            pub,
            ["caddy", "run", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
            caddy_env,
            workdir / "caddy.log",
            "serving initial configuration",
        )

        # coturn drops to nobody: its run directory must be reachable by that user, which
        # pytest's private temporary folders are not.
        run_dir = Path(tempfile.mkdtemp(prefix="p2pshare-turn-"))
        os.chmod(run_dir, 0o755)
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        turn_env = {
            **base,
            "P2PSHARE_TURN_RUN_DIR": str(run_dir / "run"),
            "P2PSHARE_TURN_PROC_USER": "nobody",
            "P2PSHARE_TURN_PROC_GROUP": "nogroup",
            # Look for a renewed certificate every second rather than every minute.
            "P2PSHARE_TURN_CERT_CHECK_S": "1",
        }
        coturn = _start(
            stack,
            lab,
            pub,
            [str(DEPLOY / "turn-entrypoint")],
            turn_env,
            workdir / "coturn.log",
            "Total General servers",
        )

        signal_env = {
            **base,
            "P2PSHARE_SIGNAL_BIN": str(Path(sys.executable).parent / "p2pshare-signal"),
        }
        signal = _start(
            stack,
            lab,
            pub,
            [str(DEPLOY / "run-signal"), "--log-level", "debug", *signal_args],
            signal_env,
            workdir / "signal.log",
            r"listening on ws://127\.0\.0\.1:4750",
        )
        yield BundleLab(lab, pub, hosts3, ca, values, caddy, coturn, signal)


def run_in(ns: str, args: list[str], env: Mapping[str, str], **kw: Any) -> subprocess.Popen[str]:
    """A process in namespace ``ns`` (the caller waits for it or kills it)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *args], cwd=ROOT, env=dict(env), text=True, **kw
    )
