"""The private aiortc/aioice touches: applied only by an explicit call, never on import, and
pinned to the upstream source they were written against."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib
import inspect
import os
import subprocess
import sys
from typing import Any, cast

import aioice
import aiortc

from p2pshare import aiortc_patches

# SHA-256 (first 16 hex digits) of each upstream function's source, per tested version. An
# aiortc or aioice upgrade that changes any of them fails here: re-read the function, adapt
# aiortc_patches/, re-run the loss tests, then record the new version and fingerprints.
FINGERPRINTS: dict[tuple[str, str], dict[str, str]] = {
    ("1.16.0", "0.13.0"): {
        "aiortc.rtcsctptransport:RTCSctpTransport._handle_data": "6c5c58a45fea4e14",
        "aiortc.rtcsctptransport:RTCSctpTransport._mark_received": "4e547408cdb5b268",
        "aiortc.rtcsctptransport:RTCSctpTransport._receive_data_chunk": "8fc0008e8a91f424",
        "aiortc.rtcsctptransport:RTCSctpTransport._receive_sack_chunk": "a9837751b7cb9d31",
        "aiortc.rtcsctptransport:RTCSctpTransport._t3_expired": "b1400ba6f116afe6",
        "aiortc.rtcsctptransport:RTCSctpTransport._transmit": "0f05f95ed5f53d04",
        "aioice.ice:get_host_addresses": "47c9b9a55061bb12",
        "aiortc.rtcsctptransport:RTCSctpTransport.__init__": "bcbb71c64c117b1d",
        "aiortc.rtcsctptransport:RTCSctpTransport._send_sack": "b174f5ff7c3749f5",
        "aiortc.rtcsctptransport:RTCSctpTransport._get_inbound_stream": "b7c838e7be3319da",
        "aiortc.rtcsctptransport:RTCSctpTransport._flight_size_increase": "a2d702692654a455",
        "aiortc.rtcsctptransport:RTCSctpTransport._send_chunk": "15988816639853f0",
        "aiortc.rtcsctptransport:RTCSctpTransport._t3_start": "31bf60e0bdf11a62",
        "aiortc.rtcsctptransport:RTCSctpTransport._t3_restart": "1140b2e35acaf175",
        "aiortc.rtcsctptransport:RTCSctpTransport._reset_deferred_streams": "43b44cf2f2b5b4a9",
        "aiortc.rtcsctptransport:RTCSctpTransport._receive_chunk": "80ae69e075a7fa01",
        "aiortc.rtcsctptransport:InboundStream.add_chunk": "a211e0e33042652e",
        "aiortc.rtcsctptransport:InboundStream.pop_messages": "c48d9a839ae6763b",
        "aiortc.rtcicetransport:RTCIceTransport.__init__": "6cf367e56a3c3dfc",
        "aioice.ice:Connection.__init__": "4eaf769849043a6b",
        "aioice.ice:Connection.check_complete": "86cb64672d8acf0f",
        "aiortc.rtcsctptransport:RTCSctpTransport._send": "cb1c57c24b64cad6",
        "aiortc.rtcdtlstransport:RTCDtlsTransport._recv_next": "b8c75f8faf48e1a2",
        "aiortc.rtcdtlstransport:RTCDtlsTransport._write_ssl": "da1e5061058db87a",
        "aiortc.rtcsctptransport:RTCSctpTransport._update_advanced_peer_ack_point": "3617573bb402444d",  # noqa: E501
        "aiortc.rtcsctptransport:RTCSctpTransport._maybe_abandon": "3723c4b55ce21ce8",
        "aiortc.rtcsctptransport:RTCSctpTransport._update_rto": "83afef41e5bf15cc",
        "aiortc.rtcsctptransport:RTCSctpTransport._data_channel_flush": "8c804e8f2d825a2b",
        "aiortc.rtcsctptransport:RTCSctpTransport._flight_size_decrease": "e9dfc1d427af2d23",
        "aiortc.rtcsctptransport:RTCSctpTransport._t3_cancel": "b948ea9c215aa991",
        "aiortc.rtcsctptransport:Chunk.__bytes__": "79e50b8a930ad1fa",
        "aiortc.rtcsctptransport:serialize_packet": "162dd05a6949a16d",
        "aiortc.rtcsctptransport:parse_packet": "eeb43c97b7c28fb6",
        "aiortc.rtcdtlstransport:RTCDtlsTransport.__init__": "5d5ba5a1581ab77d",
        "aiortc.rtcdtlstransport:RTCDtlsTransport._send_data": "4545997852e5d324",
        "aiortc.rtcdtlstransport:RTCDtlsTransport.start": "a8519f0a800d5d60",
        "aiortc.rtcicetransport:RTCIceGatherer.__init__": "a3c95b53bbd8740f",
        "aioice.ice:StunProtocol.connection_made": "0a97a6671a385a85",
        "aioice.ice:StunProtocol.send_data": "5d684c9514ce9fff",
        "aioice.ice:StunProtocol.connection_lost": "f051a124d3209e99",
        "aioice.ice:StunProtocol.datagram_received": "30980e803dfdc683",
    }
}


def _fingerprint(spec: str) -> str:
    # From the module's file, not the live attribute: once patched, that is our function.
    module, qualname = spec.split(":")
    source = inspect.getsource(importlib.import_module(module))
    scope: list[ast.stmt] = ast.parse(source).body
    node: ast.stmt | None = None
    for part in qualname.split("."):
        node = next(
            n
            for n in scope
            if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name == part
        )
        scope = node.body
    segment = ast.get_source_segment(source, node, padded=True) if node else None
    assert segment is not None, spec
    return hashlib.sha256(segment.encode()).hexdigest()[:16]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_upstream_source_is_what_the_patches_were_written_against() -> None:
    """Every replaced or relied-on upstream function still has the source we read."""
    version = (aiortc.__version__, aioice.__version__)
    assert version in FINGERPRINTS, f"untested aiortc/aioice {version}: see the comment above"
    assert aiortc.__version__ in aiortc_patches.TESTED_VERSIONS
    assert aioice.__version__ in aiortc_patches.TESTED_AIOICE_VERSIONS
    expected = FINGERPRINTS[version]
    assert set(expected) == set(aiortc_patches.UPSTREAM_TOUCHED)
    changed = [s for s in aiortc_patches.UPSTREAM_TOUCHED if _fingerprint(s) != expected[s]]
    assert changed == []


def test_pure_modules_load_no_aiortc() -> None:
    """The package, settings, errors, transfer protocol and wire format import without aiortc."""
    loaded = _run(
        "import sys, p2pshare, p2pshare.config, p2pshare.errors, p2pshare.transfer, "
        "p2pshare.messages, p2pshare.codes, p2pshare.files, p2pshare.pake; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiortc', 'aioice')))"
    )
    assert loaded == "[]"


def test_the_cli_loads_aiortc_only_on_the_preload_thread() -> None:
    """Starting the CLI or a session imports no aiortc (0.1 s of a receiver's start, issue
    12); send and receive start it on a thread while the rendezvous runs, and connect()
    finds it there."""
    out = _run(
        "import sys, threading, p2pshare.cli, p2pshare.session\n"
        "from p2pshare import pairing\n"
        "def loaded():\n"
        "    return sorted({m.split('.')[0] for m in sys.modules} & {'aiortc', 'aioice'})\n"
        "print(loaded())\n"
        "pairing.preload_webrtc()\n"
        "[t.join() for t in threading.enumerate() if t.name == 'p2pshare-preload']\n"
        "print(loaded(), 'p2pshare.webrtc' in sys.modules)\n"
    )
    assert out.splitlines() == ["[]", "['aioice', 'aiortc'] True"]


def test_importing_webrtc_changes_nothing_until_a_connection_is_made() -> None:
    """Import leaves aiortc stock; the first PeerLink applies every touch at once."""
    out = _run(
        "import asyncio, aioice.ice\n"
        "from aiortc.rtcsctptransport import RTCSctpTransport as T\n"
        "stock = (T._handle_data, T._transmit, aioice.ice.get_host_addresses)\n"
        "from p2pshare import webrtc, aiortc_patches\n"
        "print((T._handle_data, T._transmit, aioice.ice.get_host_addresses) == stock)\n"
        "async def main():\n"
        "    link = webrtc.PeerLink(webrtc.IceConfig())\n"
        "    await link.close()\n"
        "asyncio.run(main())\n"
        "print(T._handle_data is not stock[0], T._transmit is not stock[1],"
        " aioice.ice.get_host_addresses is not stock[2], aiortc_patches.enabled())\n"
    )
    assert out.splitlines() == ["True", "True True True True"]


def test_stock_switch_keeps_the_sctp_path_stock() -> None:
    """P2PSHARE_STOCK_SCTP=1 leaves aiortc's SCTP alone (for comparisons)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from aiortc.rtcsctptransport import RTCSctpTransport as T\n"
            "stock = T._handle_data\n"
            "import os\n"
            "from p2pshare import aiortc_patches, config\n"
            "patched = aiortc_patches.apply(config.Tuning.from_env(os.environ))\n"
            "print(patched, aiortc_patches.enabled(), T._handle_data is stock)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "P2PSHARE_STOCK_SCTP": "1"},
    ).stdout.strip()
    assert out == "True False True"


def test_datagrams_sent_without_the_gil_arrive_whole_and_in_order() -> None:
    """An ICE host socket's datagrams go out through Python's sendto (GIL released) on the
    real event loop of the CLI (uvloop), up to 64 KB each; a datagram that sendto refuses goes
    through uvloop instead, in order; installing twice changes nothing; the duplicate
    descriptor is closed with the transport."""
    import socket
    from types import SimpleNamespace

    import uvloop
    from aioice.ice import StunProtocol

    from p2pshare.aiortc_patches.sockets import send_without_gil

    assert aiortc_patches.apply()

    async def main() -> tuple[list[bytes], list[bytes], bool, int]:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inbox:
            inbox.bind(("127.0.0.1", 0))
            inbox.settimeout(10)
            connection = cast(Any, SimpleNamespace(protocol_lost=lambda _: None))
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: StunProtocol(receiver=connection),
                local_addr=("127.0.0.1", 0),
            )
            sock = transport.get_extra_info("socket")
            send_without_gil(protocol, sock)
            fast = cast(Any, protocol)._p2p_fast_socket
            send_without_gil(protocol, sock)
            once = cast(Any, protocol)._p2p_fast_socket is fast
            sent = [os.urandom(size) for size in (1, 1_200, 16_232, 65_000) * 10]
            got = []
            for k, data in enumerate(sent):
                if k == len(sent) // 2:
                    fast.close()  # from now on every sendto fails: uvloop sends them
                await protocol.send_data(data, inbox.getsockname()[:2])
                got.append(inbox.recv(65_535))
            await protocol.close()
            # Another socket, left alone: closing its transport closes the duplicate.
            _, other = await loop.create_datagram_endpoint(
                lambda: StunProtocol(receiver=connection),
                local_addr=("127.0.0.1", 0),
            )
            send_without_gil(other, other.transport.get_extra_info("socket"))
            duplicate = cast(Any, other)._p2p_fast_socket
            assert duplicate.fileno() >= 0
            await other.close()  # returns once connection_lost was called
            return sent, got, once, duplicate.fileno()

    sent, got, once, fileno = uvloop.run(main())
    assert got == sent
    assert once
    assert fileno == -1
