"""The built-in public defaults, with no flags and no P2PSHARE_* variables, in the NAT lab:
the lab's public network answers to relay.magic-wormhole.io (the real mailbox server, behind
a TLS front with a lab CA) and stun.cloudflare.com (coturn), through /etc/netns hosts files.
Nothing here reaches a real public server: the namespaces have no route out.

These run as root in CI; a machine that cannot build the lab fails them (never skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from p2pshare.errors import ConnectError, NoSuchCodeError, WrongCodeError
from tests.cli_helpers import Peer
from tests.natlab import internet, one_lan

pytestmark = pytest.mark.timeout(150)


def plain_env(tmp_path: Path | None = None) -> dict[str, str]:
    """A user's environment: no P2PSHARE_* variable, no proxy; the lab CA trusted (as a
    machine trusts the real CAs) when ``tmp_path`` holds one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("P2PSHARE_") and "proxy" not in k.lower()
    }
    env["PYTHONUNBUFFERED"] = "1"
    if tmp_path is not None:
        env["SSL_CERT_FILE"] = str(tmp_path / "lab-ca.pem")
    return env


def plain_pair(
    tmp_path: Path, host_a: str, host_b: str, env: dict[str, str]
) -> tuple[Peer, Peer, bytes, Path]:
    """``p2pshare send FILE`` in ``host_a``, ``p2pshare receive CODE`` in ``host_b``: the
    only options are --json (for the test to read) and the receiver's --yes and -o."""
    data = os.urandom(256 * 1024)
    src = tmp_path / "payload.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    sender = Peer(["send", str(src), "--json"], cwd=tmp_path, env=env, netns=host_a)
    code = sender.event("code")
    receiver = Peer(
        ["receive", code["code"], "--json", "--yes", "-o", str(out)],
        cwd=tmp_path,
        env=env,
        netns=host_b,
    )
    return sender, receiver, data, out


@pytest.mark.parametrize("mailbox", ["tls", "plain"])
def test_plain_commands_cross_two_cone_nats(tmp_path: Path, mailbox: str) -> None:
    """Two hosts behind two different cone NATs transfer with the plain commands: the code
    is opened at the public mailbox (wss://; where only the older ws://...:4000 answers,
    there), the receiver finds the sender there, STUN punches through the NATs, and the
    sender names the rendezvous it used."""
    with internet(tmp_path, "cone", "cone", public_defaults=mailbox) as net:
        sender, receiver, data, out = plain_pair(
            tmp_path, net.host_a, net.host_b, plain_env(tmp_path)
        )
        assert receiver.wait() == 0, receiver.stderr
        assert sender.wait() == 0, sender.stderr
    assert (out / "payload.bin").read_bytes() == data
    assert receiver.last("done")["blake3"] == blake3.blake3(data).hexdigest()
    code = sender.last("code")
    assert code["public"] == "relay.magic-wormhole.io"
    assert code["rendezvous"] == "relay.magic-wormhole.io, public, and this network"
    assert code["short_command"] == f"p2pshare receive {code['code']}"
    assert sender.last("connected")["path"] == receiver.last("connected")["path"] == "nat"


def test_plain_commands_between_symmetric_nats_stop_with_advice(tmp_path: Path) -> None:
    """Symmetric NATs on both sides and no TURN: both stop with exit 8 and one line that
    says what happened and what to do, within the connect timeout (never a hang)."""
    with internet(tmp_path, "symmetric", "symmetric", public_defaults="tls") as net:
        # Plain but for a shorter connect timeout (8 s, default 30 s): the same failure.
        env = plain_env(tmp_path) | {"P2PSHARE_CONNECT_TIMEOUT_S": "8"}
        sender, receiver, _, out = plain_pair(tmp_path, net.host_a, net.host_b, env)
        assert receiver.wait(timeout=60) == ConnectError.exit_code, receiver.stderr
        assert sender.wait(timeout=60) == ConnectError.exit_code, sender.stderr
    for peer in (sender, receiver):
        message = peer.last("error")["message"]
        assert message.startswith("could not connect"), message
        assert "TURN" in message and "docs/self-hosting.md" in message, message
        assert "\n" not in message
    assert list(out.iterdir()) == []


def test_plain_commands_on_a_lan_without_internet(tmp_path: Path) -> None:
    """On a LAN with no internet (no route out, public names unresolvable) the plain
    commands still pair through the sender's own server, over the LAN, and the sender says
    the code works on this network only."""
    with one_lan(tmp_path) as (_, host_a, host_b):
        sender, receiver, data, out = plain_pair(tmp_path, host_a, host_b, plain_env())
        assert receiver.wait() == 0, receiver.stderr
        assert sender.wait() == 0, sender.stderr
    assert (out / "payload.bin").read_bytes() == data
    code = sender.last("code")
    assert code["public"] is None
    assert code["rendezvous"] == "this network only"
    warnings = [e["message"] for e in sender.events if e["event"] == "warning"]
    assert any("public rendezvous is out of reach" in w for w in warnings), warnings
    assert receiver.last("connected")["path"] == "lan"


def _wrong(code: str) -> str:
    nameplate, *words = code.split("-")
    return "-".join([nameplate, *(w + "x" for w in words)])


@pytest.mark.parametrize("guess_on", ["lan", "public"])
def test_a_wrong_guess_on_either_route_burns_the_code_on_both(
    tmp_path: Path, guess_on: str
) -> None:
    """The sender's code is open on its LAN and at the public mailbox under one PAKE: a
    wrong guess on one route (exit 6 on both sides) leaves nothing to find on the other."""
    with internet(tmp_path, "cone", "cone", public_defaults="tls") as net:
        env = plain_env(tmp_path)
        src = tmp_path / "payload.bin"
        src.write_bytes(b"secret")
        out = tmp_path / "out"
        out.mkdir()
        sender = Peer(["send", str(src), "--json"], cwd=tmp_path, env=env, netns=net.host_a)
        code = sender.event("code")["code"]
        # on the sender's own LAN (the same host: mDNS answers at once), or from elsewhere
        guess_host, right_host = (
            (net.host_a, net.host_b) if guess_on == "lan" else (net.host_b, net.host_a)
        )
        receive = ["receive", "--json", "--yes", "-o", str(out)]
        guesser = Peer([*receive, _wrong(code)], cwd=tmp_path, env=env, netns=guess_host)
        assert guesser.wait() == WrongCodeError.exit_code, guesser.stderr
        assert sender.wait() == WrongCodeError.exit_code, sender.stderr
        late = Peer([*receive, code], cwd=tmp_path, env=env, netns=right_host)
        assert late.wait() == NoSuchCodeError.exit_code, late.stderr
    assert list(out.iterdir()) == []


def test_a_refusing_public_mailbox_leaves_the_sender_on_its_lan(tmp_path: Path) -> None:
    """When the public mailbox's operator refuses service (its welcome carries an error),
    the sender shows the operator's text and goes on with a code for its own network."""
    stop = "--signal-error=down for maintenance"
    with internet(tmp_path, "cone", "cone", public_defaults="tls", mailbox_args=[stop]) as net:
        src = tmp_path / "payload.bin"
        src.write_bytes(b"x")
        sender = Peer(
            ["send", str(src), "--json"], cwd=tmp_path, env=plain_env(tmp_path), netns=net.host_a
        )
        try:
            code = sender.event("code")
        finally:
            sender.kill()
    assert code["public"] is None and code["rendezvous"] == "this network only"
    warnings = [e["message"] for e in sender.events if e["event"] == "warning"]
    assert any("down for maintenance" in w for w in warnings), warnings
