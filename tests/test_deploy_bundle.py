"""The self-host bundle in ``deploy/``, tested as shipped (issue 30): its own Caddyfile,
coturn template and start scripts, filled only from an environment file in the bundle's
format, on a server in network namespaces with clients behind NATs (tests/bundle_lab.py).

Not run here: the container image and compose file (no container engine on this machine)
and the systemd units (no systemd); docs/self-hosting.md says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from tests.bundle_lab import (
    DEPLOY,
    DOMAIN,
    ECHO_PORT,
    METADATA_IP,
    PRIVATE_IP,
    SECOND_PUBLIC_IP,
    BundleLab,
    bundle,
    read_env_file,
    run_in,
)
from tests.cli_helpers import Peer
from tests.natlab import PUBLIC_IP

pytestmark = pytest.mark.timeout(180)

MAX_CONNS_PER_IP = 2


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundleLab]:
    """One server running the bundle for the whole module, with a small per-address
    connection limit so that budgets are visible."""
    with bundle(
        tmp_path_factory.mktemp("bundle"), "--max-conns-per-ip", str(MAX_CONNS_PER_IP)
    ) as running:
        yield running


# -- the files themselves -----------------------------------------------------------------


def test_the_env_file_names_only_the_domain_and_the_turn_secret() -> None:
    """p2pshare.env is the one file to edit: two active values, the rest commented."""
    assert set(read_env_file(DEPLOY / "p2pshare.env")) == {
        "P2PSHARE_DOMAIN",
        "P2PSHARE_TURN_SECRET",
    }


def test_the_example_secret_is_refused_in_one_line() -> None:
    """Started with the example values, coturn's config is not rendered: one line, exit 2."""
    env = {**os.environ, **read_env_file(DEPLOY / "p2pshare.env")}
    for script in ("render-turnserver-conf", "run-signal"):
        proc = subprocess.run(
            [str(DEPLOY / script)], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2, script
        assert "P2PSHARE_TURN_SECRET" in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert proc.stdout == ""


def test_every_internal_range_is_a_denied_peer() -> None:
    """The rendered coturn config denies the internal ranges the issue lists, as ranges
    coturn 4.6 reads correctly (no range starting at "::")."""
    env = {**os.environ, "P2PSHARE_DOMAIN": "x.test", "P2PSHARE_TURN_SECRET": "s3cret"}
    conf = subprocess.run(
        [str(DEPLOY / "render-turnserver-conf")], env=env, capture_output=True, text=True
    ).stdout
    denied = set(re.findall(r"^denied-peer-ip=(\S+)$", conf, re.MULTILINE))
    for needed in [
        "0.0.0.0-0.255.255.255",
        "10.0.0.0-10.255.255.255",
        "100.64.0.0-100.127.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "224.0.0.0-255.255.255.255",
        "::1",
        "::ffff:0.0.0.0-::ffff:255.255.255.255",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]:
        assert needed in denied
    assert not any(r.startswith("::-") for r in denied)
    for line in ("use-auth-secret", "no-tcp-relay", "no-multicast-peers", "no-cli", "no-tlsv1"):
        assert re.search(rf"^{line}$", conf, re.MULTILINE)
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert "static-auth-secret=s3cret" in settings
    assert not any("${" in line for line in settings)


# -- the bundle running in the lab --------------------------------------------------------


def test_symmetric_nat_to_symmetric_nat_is_relayed_through_the_bundle(
    lab: BundleLab, tmp_path: Path
) -> None:
    """(a) A CLI behind a symmetric NAT sends to a CLI behind another one through
    wss://DOMAIN (Caddy, the lab CA) and the bundle's coturn: relayed, verified."""
    data = os.urandom(256 * 1024)
    (tmp_path / "payload.bin").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    server = ["--server", lab.url, "--json"]
    sender = Peer(
        ["send", str(tmp_path / "payload.bin"), *server],
        cwd=tmp_path,
        env=lab.client_env(),
        netns=lab.hosts[0],
    )
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, *server, "--yes", "-o", str(out)],
        cwd=tmp_path,
        env=lab.client_env(),
        netns=lab.hosts[1],
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "payload.bin").read_bytes() == data
    assert receiver.last("done")["blake3"] == blake3.blake3(data).hexdigest()
    assert sender.last("connected")["path"] == receiver.last("connected")["path"] == "relay"
    assert receiver.last("connected")["relay"].startswith(PUBLIC_IP + ":")


def hold_connections(
    lab: BundleLab, host: str, count: int, forge: str | None = None
) -> tuple[subprocess.Popen[str], list[str | int]]:
    args = [sys.executable, "-m", "tests.bundle_probe", "conns", lab.url, str(count)]
    if forge:
        args += ["--forge", forge]
    proc = run_in(
        host,
        args,
        lab.client_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the probe in {host} printed nothing (exit {proc.wait()})"
    results: list[str | int] = json.loads(line)
    return proc, results


def test_clients_keep_their_own_budgets_behind_caddy(lab: BundleLab) -> None:
    """(c) Through the bundle's proxy, two clients behind different addresses each get
    --max-conns-per-ip; a forged X-Forwarded-For (naming the other client, or a fresh
    address) changes nothing; the server's log names the real client."""
    held = []
    try:
        first, results = hold_connections(lab, lab.hosts[0], MAX_CONNS_PER_IP + 1)
        held.append(first)
        assert results == ["open"] * MAX_CONNS_PER_IP + [429]
        for forged in ("203.0.113.2", "192.0.2.77", "192.0.2.77, 198.51.100.3"):
            probe, results = hold_connections(lab, lab.hosts[0], 1, forge=forged)
            held.append(probe)
            assert results == [429], forged
        second, results = hold_connections(lab, lab.hosts[1], MAX_CONNS_PER_IP)
        held.append(second)
        assert results == ["open"] * MAX_CONNS_PER_IP
    finally:
        for proc in held:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
    log = lab.signal.text
    assert "refused 203.0.113.1 (via proxy 127.0.0.1): too many connections" in log
    assert "192.0.2.77" not in log and "198.51.100.3" not in log


def test_turn_refuses_to_reach_inward_but_relays_outward(lab: BundleLab) -> None:
    """(d) With credentials from the server and TURN over TLS (5349, the lab CA), the relay
    refuses the metadata address, the private side, the server's own public address and
    loopback (403), and relays to another public address (an echo comes back)."""
    inward = [METADATA_IP, PRIVATE_IP, PUBLIC_IP, "127.0.0.1"]
    targets = [f"{ip}:{ECHO_PORT}" for ip in [*inward, SECOND_PUBLIC_IP]]
    proc = run_in(
        lab.hosts[0],
        [sys.executable, "-m", "tests.bundle_probe", "turn", lab.url, *targets],
        lab.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["relayed"].startswith(PUBLIC_IP + ":")
    for ip in inward:
        assert report["targets"][f"{ip}:{ECHO_PORT}"] == "refused 403 Forbidden IP", ip
    assert report["targets"][f"{SECOND_PUBLIC_IP}:{ECHO_PORT}"] == "echo"
    log = lab.coturn.text
    assert f"A peer IP {METADATA_IP} denied in the range: 169.254.0.0-169.254.255.255" in log
    assert f"A peer IP {PRIVATE_IP} denied in the range: 10.0.0.0-10.255.255.255" in log


def test_caddy_never_tries_acme_in_the_lab(lab: BundleLab) -> None:
    """The lab's certificate replaces ACME: Caddy says it skips certificate management and
    logs nothing about obtaining one."""
    log = lab.caddy.text
    assert "skipping automatic certificate management" in log and DOMAIN in log
    assert not re.search(r"acme|obtain|issuer|letsencrypt|zerossl", log, re.IGNORECASE)
