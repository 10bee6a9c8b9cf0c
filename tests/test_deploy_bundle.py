"""The self-host bundle in ``deploy/``, tested as shipped (issue 30): its own Caddyfile,
coturn template and start scripts, filled only from an environment file in the bundle's
format, on a server in network namespaces with clients behind NATs (tests/bundle_lab.py).

Not run here: the container image and compose file (no container engine on this machine)
and the systemd units (no systemd); docs/self-hosting.md says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import playwright.sync_api as playwright_sync  # the test extra
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.bundle_lab import (
    DEPLOY,
    DOMAIN,
    ECHO_PORT,
    METADATA_IP,
    PRIVATE_IP,
    SECOND_PUBLIC_IP,
    BundleLab,
    LogWatcher,
    bundle,
    make_lab_ca,
    read_env_file,
    run_in,
)
from tests.cli_helpers import Peer
from tests.natlab import PUBLIC_IP, Lab, check_prerequisites, sh
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

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
        "192.0.0.0-192.0.0.255",
        "198.18.0.0-198.19.255.255",
        "224.0.0.0-255.255.255.255",
        "::1",
        "::ffff:0.0.0.0-::ffff:255.255.255.255",
        "64:ff9b::-64:ff9b::ffff:ffff",
        "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
        "100::-100::ffff:ffff:ffff:ffff",
        "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]:
        assert needed in denied
    assert not any(r.startswith("::-") for r in denied)
    for line in ("use-auth-secret", "no-tcp-relay", "no-multicast-peers", "no-cli", "no-tlsv1"):
        assert re.search(rf"^{line}$", conf, re.MULTILINE)
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert "static-auth-secret=s3cret" in settings
    assert not any("${" in line for line in settings)


def test_the_untested_ways_name_only_files_the_bundle_has() -> None:
    """The systemd units run only files install-systemd copies from deploy/, and compose
    mounts only files that exist: a rename cannot leave them pointing at nothing."""
    installer = (DEPLOY / "install-systemd").read_text()
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        assert unit.name in installer
        for name in re.findall(r"/opt/p2pshare/deploy/([\w.-]+)", unit.read_text()):
            assert (DEPLOY / name).is_file(), f"{unit.name}: {name}"
            assert f'"$src/deploy/{name}"' in installer, f"install-systemd does not copy {name}"
    # turn-entrypoint runs these from its own folder.
    for name in ("render-turnserver-conf", "turnserver.conf"):
        assert f'"$src/deploy/{name}"' in installer, f"install-systemd does not copy {name}"
    compose = (DEPLOY / "compose.yaml").read_text()
    for name in re.findall(r"^\s+- \./([\w.-]+):", compose, re.MULTILINE):
        assert (DEPLOY / name).exists() or name == "tls", name
    assert "env_file: p2pshare.env" in compose
    assert "dockerfile: deploy/Dockerfile" in compose and (DEPLOY / "Dockerfile").is_file()


# -- the bundle running in the lab --------------------------------------------------------


def transfer(
    lab: BundleLab, tmp_path: Path, hosts: tuple[str, str], *flags: str
) -> tuple[Peer, Peer]:
    """Send 256 KiB from the first host to the second through wss://DOMAIN; both verified."""
    data = os.urandom(256 * 1024)
    (tmp_path / "payload.bin").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    server = ["--server", lab.url, "--json", *flags]
    sender = Peer(
        ["send", str(tmp_path / "payload.bin"), *server],
        cwd=tmp_path,
        env=lab.client_env(),
        netns=hosts[0],
    )
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, *server, "--yes", "-o", str(out)],
        cwd=tmp_path,
        env=lab.client_env(),
        netns=hosts[1],
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "payload.bin").read_bytes() == data
    assert receiver.last("done")["blake3"] == blake3.blake3(data).hexdigest()
    return sender, receiver


def test_symmetric_nat_to_symmetric_nat_is_relayed_through_the_bundle(
    lab: BundleLab, tmp_path: Path
) -> None:
    """(a) A CLI behind a symmetric NAT sends to a CLI behind another one through
    wss://DOMAIN (Caddy, the lab CA) and the bundle's coturn: relayed, verified."""
    sender, receiver = transfer(lab, tmp_path, (lab.hosts[0], lab.hosts[1]))
    assert sender.last("connected")["path"] == receiver.last("connected")["path"] == "relay"
    assert receiver.last("connected")["relay"].startswith(PUBLIC_IP + ":")


def test_relay_only_on_both_sides_meets_relay_to_relay(lab: BundleLab, tmp_path: Path) -> None:
    """Both sides --relay-only: their only path runs from one relay of this server to the
    other, through the server's own public address, which the bundle must therefore not
    deny (denying it made this fail in the lab)."""
    sender, receiver = transfer(lab, tmp_path, (lab.hosts[0], lab.hosts[2]), "--relay-only")
    assert sender.last("connected")["path"] == receiver.last("connected")["path"] == "relay"


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
    refuses the metadata address, the private side and loopback (403), and relays to public
    addresses (an echo comes back), the server's own included: relay-to-relay paths use it."""
    inward = [METADATA_IP, PRIVATE_IP, "127.0.0.1"]
    outward = [SECOND_PUBLIC_IP, PUBLIC_IP]
    targets = [f"{ip}:{ECHO_PORT}" for ip in [*inward, *outward]]
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
    for ip in outward:
        assert report["targets"][f"{ip}:{ECHO_PORT}"] == "echo", ip
    log = lab.coturn.text
    assert f"A peer IP {METADATA_IP} denied in the range: 169.254.0.0-169.254.255.255" in log
    assert f"A peer IP {PRIVATE_IP} denied in the range: 10.0.0.0-10.255.255.255" in log


def test_caddy_never_tries_acme_in_the_lab(lab: BundleLab) -> None:
    """The lab's certificate replaces ACME: Caddy says it skips certificate management and
    logs nothing about obtaining one."""
    log = lab.caddy.text
    assert "skipping automatic certificate management" in log and DOMAIN in log
    assert not re.search(r"acme|obtain|issuer|letsencrypt|zerossl", log, re.IGNORECASE)


def receive_in_page_at(page: Any, link: str) -> Any:
    """Open the share link, accept, return the download (as tests/test_browser.py does)."""
    page.goto(link)
    accept = page.get_by_role("button", name="Accept", exact=True)
    accept.wait_for()
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        accept.click()
    return download.value


def spki_pin(cert_file: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list form of the lab certificate's key."""
    leaf = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    der = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_chromium_loads_the_page_over_https_and_receives_from_a_cli(
    lab: BundleLab, tmp_path: Path
) -> None:
    """(b) Chromium on a third host opens https://DOMAIN (Caddy, the lab certificate pinned),
    a secure context, and receives a file from a CLI behind a symmetric NAT, streamed to the
    download and SHA-256 verified."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/install-system-deps"
    data = os.urandom(3 * 1024 * 1024 + 1)
    (tmp_path / "to-browser.bin").write_bytes(data)
    sender = Peer(
        ["send", str(tmp_path / "to-browser.bin"), "--server", lab.url, "--json"],
        cwd=tmp_path,
        env=lab.client_env(),
        netns=lab.hosts[0],
    )
    event = sender.event("code")
    assert event["link"] == f"https://{DOMAIN}/#{event['code']}"
    wrapper = tmp_path / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.hosts[2]} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(lab.ca.cert_file)}"]
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(wrapper), args=args)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            download = receive_in_page_at(page, event["link"])
            assert hashlib.sha256(Path(download.path()).read_bytes()).digest() == (
                hashlib.sha256(data).digest()
            )
            assert page.evaluate("isSecureContext") is True
            page.locator("#message.ok").wait_for(timeout=TIMEOUT_MS)
            assert "as it arrived" in page.locator("#downloads").inner_text()
            assert not errors, errors
        finally:
            browser.close()
    assert sender.wait(60) == 0, sender.stderr


def presented_cert(lab: BundleLab) -> str:
    proc = run_in(
        lab.hosts[0],
        [sys.executable, "-m", "tests.bundle_probe", "cert", DOMAIN, "5349"],
        lab.client_env(),
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return out.strip()


def cert_sha256(path: Path) -> str:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_a_renewed_certificate_reaches_coturn_without_a_restart(
    lab: BundleLab, tmp_path: Path
) -> None:
    """When the certificate files change (Caddy renewing, or new files), turn-entrypoint
    copies them for coturn and signals it: TURN over TLS presents the new certificate, from
    the same coturn process, which by then runs as nobody."""
    original = {p: p.read_bytes() for p in (lab.ca.cert_file, lab.ca.key_file)}
    assert presented_cert(lab) == cert_sha256(lab.ca.cert_file)
    renewed = make_lab_ca(tmp_path / "renewed", DOMAIN)
    reloads = lab.coturn.text.count("Reloading TLS certificates")
    try:
        lab.ca.key_file.write_bytes(renewed.key_file.read_bytes())
        lab.ca.cert_file.write_bytes(renewed.cert_file.read_bytes())
        lab.coturn.wait_for_count("Reloading TLS certificates", reloads + 1)
        assert "coturn reloads it" in lab.coturn.text
        assert wait_until(lambda: presented_cert(lab) == cert_sha256(renewed.cert_file))
    finally:
        for path, data in original.items():
            path.write_bytes(data)
        lab.coturn.wait_for_count("Reloading TLS certificates", reloads + 2)
    assert wait_until(lambda: presented_cert(lab) == cert_sha256(lab.ca.cert_file))
    assert "turnserver exited" not in lab.coturn.text


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``check`` (coturn hands the reloaded certificate to its threads asynchronously
    after logging the reload) until it holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_coturn_takes_the_newest_certificate_caddy_holds(tmp_path: Path) -> None:
    """Without P2PSHARE_TLS=files, turn-entrypoint finds the domain's certificate in Caddy's
    storage (certificates/ISSUER/DOMAIN/DOMAIN.crt and .key), the newest of any issuer, and
    coturn serves it on 5349."""
    check_prerequisites("turnserver")
    storage = tmp_path / "caddy-data"
    older = make_lab_ca(tmp_path / "older", DOMAIN)
    newer = make_lab_ca(tmp_path / "newer", DOMAIN)
    for issuer, made, mtime in (
        ("acme-v02.api.letsencrypt.org-directory", older, 1_700_000_000),
        ("acme.zerossl.com-v2-dv90", newer, 1_800_000_000),
    ):
        folder = storage / "certificates" / issuer / DOMAIN
        folder.mkdir(parents=True)
        for source, name in ((made.cert_file, f"{DOMAIN}.crt"), (made.key_file, f"{DOMAIN}.key")):
            (folder / name).write_bytes(source.read_bytes())
            os.utime(folder / name, (mtime, mtime))
    lab = Lab(prefix=f"p2c{os.getpid() % 100000}", workdir=tmp_path)
    try:
        ns = lab.add_ns("srv")
        # coturn refuses to run on loopback alone: a network card (a veth pair) with an address.
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", ns=ns)
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "link", "set", "eth1", "up", ns=ns)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")},
            "P2PSHARE_DOMAIN": DOMAIN,
            "P2PSHARE_TURN_SECRET": "storage-test-secret",
            "P2PSHARE_CADDY_DATA": str(storage),
            "P2PSHARE_TURN_RUN_DIR": str(tmp_path / "run"),
        }
        proc = lab.spawn(
            ns,
            [str(DEPLOY / "turn-entrypoint")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        log = LogWatcher(proc.stdout, tmp_path / "coturn.log")
        log.wait_for("Total General servers")
        probe = run_in(
            ns,
            [sys.executable, "-m", "tests.bundle_probe", "cert", "192.0.2.1", "5349"],
            {**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
        )
        out, _ = probe.communicate(timeout=30)
        assert out.strip() == cert_sha256(newer.cert_file)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        lab.close()


def test_a_coturn_that_cannot_start_ends_the_entrypoint_with_its_reason(tmp_path: Path) -> None:
    """coturn refusing its setup (here: a host with loopback only) ends turn-entrypoint with
    status 1 at once, coturn's reason in the log, for systemd or compose to restart it."""
    check_prerequisites("turnserver")
    made = make_lab_ca(tmp_path / "tls", DOMAIN)
    lab = Lab(prefix=f"p2e{os.getpid() % 100000}", workdir=tmp_path)
    try:
        ns = lab.add_ns("srv")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")},
            "P2PSHARE_DOMAIN": DOMAIN,
            "P2PSHARE_TURN_SECRET": "exit-test-secret",
            "P2PSHARE_TLS": "files",
            "P2PSHARE_TLS_CERT": str(made.cert_file),
            "P2PSHARE_TLS_KEY": str(made.key_file),
            "P2PSHARE_TURN_RUN_DIR": str(tmp_path / "run"),
        }
        proc = lab.spawn(
            ns,
            [str(DEPLOY / "turn-entrypoint")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert "Cannot configure any meaningful IP listener address" in out
        last = out.rstrip().splitlines()[-1]
        assert re.fullmatch(
            r"turn-entrypoint: turnserver exited \(\d+\); its log above says why", last
        )
    finally:
        lab.close()
