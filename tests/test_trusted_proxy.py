"""--trusted-proxy against the real server: raw websocket clients on loopback addresses send
X-Forwarded-For, from an address the server trusts (127.0.0.2, standing in for the proxy)
and from one it does not (127.0.0.3)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from signal_server.protocol import SUBPROTOCOL
from signal_server.server import RunningServer, ServerSettings, start_server
from tests.cli_helpers import ROOT
from tests.signal_helpers import FakeClock, recv_json, send_json

PROXY = "127.0.0.2"
STRANGER = "127.0.0.3"


@pytest.fixture
async def proxied(clock: FakeClock) -> AsyncIterator[RunningServer]:
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        max_conns_per_ip=2,
        joins_per_ip_per_minute=2,
        trusted_proxies=(f"{PROXY}/32",),
    )
    async with start_server(settings, clock) as running:
        yield running


async def dial(url: str, source: str, forwarded_for: str | None) -> ClientConnection:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    ws = await connect(
        url,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        additional_headers=headers,
        local_addr=(source, 0),
        compression=None,
        open_timeout=5,
    )
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def refused_status(url: str, source: str, forwarded_for: str | None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await dial(url, source, forwarded_for)
    return refused.value.response.status_code


async def test_clients_behind_the_proxy_get_their_own_connection_share(
    proxied: RunningServer,
) -> None:
    """Through the trusted proxy, each named client has --max-conns-per-ip to itself, and a
    forged left-most entry does not move a client to another share."""
    url = proxied.url
    held = [await dial(url, PROXY, "198.51.100.1") for _ in range(2)]
    assert await refused_status(url, PROXY, "198.51.100.1") == 429
    assert await refused_status(url, PROXY, "192.0.2.99, 198.51.100.1") == 429
    held += [await dial(url, PROXY, "198.51.100.2") for _ in range(2)]
    assert proxied.signal.admission.count("198.51.100.1") == 2
    assert proxied.signal.admission.count("198.51.100.2") == 2
    assert proxied.signal.admission.count(PROXY) == 0
    for ws in held:
        await ws.close()


async def test_a_forged_header_from_an_untrusted_address_changes_nothing(
    proxied: RunningServer,
) -> None:
    """From an address that is not a trusted proxy, X-Forwarded-For is ignored: every
    connection counts under the real address, whatever client it claims to be."""
    url = proxied.url
    held = [await dial(url, STRANGER, f"198.51.100.{i}") for i in (10, 11)]
    assert await refused_status(url, STRANGER, "198.51.100.12") == 429
    assert await refused_status(url, STRANGER, None) == 429
    assert proxied.signal.admission.count(STRANGER) == 2
    assert proxied.signal.admission.count("198.51.100.10") == 0
    # The clients it pretended to be still have their whole share through the proxy.
    held += [await dial(url, PROXY, "198.51.100.10") for _ in range(2)]
    for ws in held:
        await ws.close()


async def allocate(ws: ClientConnection) -> str:
    await send_json(ws, {"type": "allocate"})
    return str((await recv_json(ws))["type"])


async def test_join_rate_is_counted_per_client_behind_the_proxy(proxied: RunningServer) -> None:
    """--joins-per-ip-per-minute holds per client named by the proxy, not for the proxy as a
    whole; a stranger forging the header spends its own budget."""
    url = proxied.url
    results = []
    for client in ("198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"):
        ws = await dial(url, PROXY, client)
        results.append(await allocate(ws))
        await ws.close()
    assert results == ["allocated", "allocated", "error", "allocated"]
    forged = []
    for client in ("198.51.100.3", "198.51.100.4", "198.51.100.5"):
        ws = await dial(url, STRANGER, client)
        forged.append(await allocate(ws))
        await ws.close()
    assert forged == ["allocated", "allocated", "error"]


def run_signal(args: list[str], env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "P2PSHARE_TRUSTED_PROXY"}
    if env_value is not None:
        env["P2PSHARE_TRUSTED_PROXY"] = env_value
    return subprocess.run(
        [sys.executable, "-m", "signal_server", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env_value", "message"),
    [
        (["--trusted-proxy", "10.0.0.1/8"], None, "did you mean 10.0.0.0/8?"),
        (["--trusted-proxy", "proxy.local"], None, "not an address or network"),
        ([], "127.0.0.1, nonsense", "P2PSHARE_TRUSTED_PROXY: not an address or network"),
    ],
)
def test_a_bad_trusted_proxy_is_one_line_and_exit_2(
    args: list[str], env_value: str | None, message: str
) -> None:
    """A mistyped network, on the command line or in the environment, stops the server with
    one line naming it, before it listens."""
    proc = run_signal(args, env_value)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(("flags", "separate"), [([], True), (["--trusted-proxy", "::1"], False)])
async def test_the_environment_variable_is_read_and_flags_replace_it(
    flags: list[str], separate: bool
) -> None:
    """The p2pshare-signal command trusts P2PSHARE_TRUSTED_PROXY's proxies (two clients
    through one of them get a connection each under --max-conns-per-ip 1), and
    --trusted-proxy flags replace that list (then both count as the proxy)."""
    env = {**os.environ, "P2PSHARE_TRUSTED_PROXY": f"::1, {PROXY}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "signal_server", "--port", "0", "--max-conns-per-ip", "1", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        first = await dial(url, PROXY, "198.51.100.1")
        if separate:
            second = await dial(url, PROXY, "198.51.100.2")
            await second.close()
        else:
            assert await refused_status(url, PROXY, "198.51.100.2") == 429
        await first.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
