"""The options ``send`` and ``receive`` share, turning them into :class:`Settings`, and the
checks of what the command line says (paths, ``--text -``, server URLs).

Also the spelling out of what click cannot parse by itself (``--many`` without N) before
parsing. A bad option is a usage error: :class:`UsageProblem`, printed by ``cli.main`` like
every other (one line, exit 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from p2pshare.config import (
    ENV_LARGE_PACKETS,
    ENV_LOCAL_ADDRESSES,
    ENV_PUBLIC,
    ENV_SERVER,
    ENV_STUN,
    ENV_TURN,
    ENV_TURN_PASSWORD,
    ENV_TURN_USER,
    PUBLIC_STUN,
    IceConfig,
    Settings,
    public_servers_from_env,
    tuning_from_env,
)
from p2pshare.messages import MAX_TEXT_BYTES
from p2pshare.rendezvous import parse_server_url

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar=ENV_SERVER,
        metavar="URL",
        show_envvar=True,
        help="Rendezvous server (ws://HOST:PORT or wss://...): a p2pshare-signal or a "
        "magic-wormhole mailbox server, told apart by its greeting. Without it the sender "
        "runs one in its own process, advertised on the local network (mDNS), and opens its "
        "code at the public mailbox (relay.magic-wormhole.io) too; the receiver looks on the "
        f"local network first, then there. {ENV_PUBLIC}=0 keeps off every public server.",
    ),
]
PortOpt = Annotated[
    int,
    typer.Option(
        "--port",
        min=0,
        max=65535,
        metavar="PORT",
        rich_help_panel="Network",
        help="Without --server: the TCP port of the rendezvous server this command runs "
        "(default: any free port), so that a firewall can be opened for it in advance. "
        "The data itself then takes UDP ports ICE picks.",
    ),
]
LocalAddressOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--local-address",
        metavar="ADDR",
        help="Offer only this local IP address to the peer (repeatable; also "
        f"{ENV_LOCAL_ADDRESSES}, comma-separated). 127.0.0.1 connects two programs on one "
        "machine. Without --server, the sender's rendezvous server listens on the first.",
    ),
]
StunOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--stun",
        metavar="URL",
        rich_help_panel="Network",
        help=f"STUN server, e.g. stun:stun.example.org:3478 (repeatable; also {ENV_STUN}, "
        "comma-separated). Used before any the rendezvous server suggests. Through a "
        f"mailbox server the default is {PUBLIC_STUN[0]} (not with {ENV_PUBLIC}=0).",
    ),
]
TurnOpt = Annotated[
    str | None,
    typer.Option(
        "--turn",
        envvar=ENV_TURN,
        metavar="URL",
        rich_help_panel="Network",
        help="TURN server, e.g. turn:turn.example.org:3478?transport=udp, with "
        "--turn-user and --turn-password. Used before the rendezvous server's.",
    ),
]
TurnUserOpt = Annotated[
    str | None,
    typer.Option(
        "--turn-user",
        envvar=ENV_TURN_USER,
        metavar="USER",
        rich_help_panel="Network",
        help="TURN username.",
    ),
]
TurnPasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--turn-password",
        envvar=ENV_TURN_PASSWORD,
        metavar="PASSWORD",
        rich_help_panel="Network",
        help=f"TURN password (better in {ENV_TURN_PASSWORD}: argv is public).",
    ),
]
RelayOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--relay-only",
        rich_help_panel="Network",
        help="Only connect through the TURN relay (hides your addresses from the peer).",
    ),
]
DirectOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--direct-only",
        rich_help_panel="Network",
        help="Never relay through TURN: connect directly or fail.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON lines on stdout instead of progress bars.")
]
VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="Log what happens (-vv: and aiortc).")
]

ReconnectOpt = Annotated[
    float,
    typer.Option(
        "--reconnect-s",
        min=0,
        max=3600,
        metavar="SECONDS",
        help="When the network changes mid-transfer: how long to try to "
        "reach the other side again and resume; 0: fail at once.",
    ),
]
VerifyOpt = Annotated[
    bool,
    typer.Option(
        "--verify",
        help="Show a few words derived from the session key on both sides: read them to "
        "each other; different words mean someone is in the middle (stop with Ctrl-C).",
    ),
]
SendYesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="With --verify: show the security words without asking whether they match "
        "(then nothing waits for them).",
    ),
]
HideProgressOpt = Annotated[
    bool, typer.Option("--hide-progress", help="Do not show the progress bar.")
]


def _no_large_packets(value: bool) -> bool:
    if value:
        os.environ[ENV_LARGE_PACKETS] = "0"  # read with the other knobs (tuning_from_env)
    return value


NoLargePacketsOpt = Annotated[
    bool,
    typer.Option(
        "--no-large-packets",
        callback=_no_large_packets,
        rich_help_panel="Network",
        help="Keep to 1,200-byte packets even with another p2pshare on the local network "
        f"(also {ENV_LARGE_PACKETS}=0). Large packets are negotiated, probed and dropped "
        "by themselves when the path does not carry them: this is for comparisons.",
    ),
]


class UsageProblem(Exception):
    """Bad arguments: printed by :func:`main` like every usage error, exit 2."""


def usage(message: str) -> NoReturn:
    raise UsageProblem(message)


def server_url(server: str | None) -> str | None:
    """``--server`` as a ws:// or wss:// URL (``HOST:PORT`` and ``http(s)://`` accepted); a
    malformed one is a usage error."""
    if not server:
        return None
    try:
        return parse_server_url(server)
    except ValueError as exc:
        usage(str(exc))


def from_env_list(values: list[str] | None, env: str) -> list[str]:
    if values:
        return list(values)
    return [v.strip() for v in os.environ.get(env, "").split(",") if v.strip()]


def settings_from_options(
    server: str | None,
    local_address: list[str] | None,
    stun: list[str] | None = None,
    turn: str | None = None,
    turn_user: str | None = None,
    turn_password: str | None = None,
    relay_only: bool = False,
    direct_only: bool = False,
    **kw: Any,
) -> Settings:
    """Settings from the command line; bad network options are usage errors."""
    if relay_only and direct_only:
        usage("--relay-only and --direct-only exclude each other")
    servers: list[dict[str, Any]] = []
    stun_urls = from_env_list(stun, ENV_STUN)
    for url in [*stun_urls, *([turn] if turn else [])]:
        try:
            _check_ice_url(url)
        except ValueError:
            usage(f"not a STUN/TURN URL: {url} (like stun:host:3478 or turn:host:3478)")
    if stun_urls:
        servers.append({"urls": stun_urls})
    if turn:
        if not (turn_user and turn_password):
            usage("--turn needs --turn-user and --turn-password")
        servers.append({"urls": [turn], "username": turn_user, "credential": turn_password})
    addresses = from_env_list(local_address, ENV_LOCAL_ADDRESSES)
    policy = "relay" if relay_only else "direct" if direct_only else "all"
    ice = IceConfig(servers=tuple(servers), local_addresses=tuple(addresses) or None, policy=policy)
    try:
        tuning = tuning_from_env()
        public = public_servers_from_env()
    except ValueError as exc:
        usage(str(exc))
    window = tuning.window_bytes
    if tuning.peer_timeout_s is not None:
        kw.setdefault("peer_timeout_s", tuning.peer_timeout_s)
    if tuning.connect_timeout_s is not None:
        kw.setdefault("connect_timeout_s", tuning.connect_timeout_s)
    return Settings(
        server=server or None, ice=ice, window_bytes=window, public=public, tuning=tuning, **kw
    )


def _check_ice_url(url: str) -> None:
    # aiortc's own parser, loaded only when a STUN or TURN URL is given.
    from p2pshare.webrtc import check_ice_url

    check_ice_url(url)


def check_paths(paths: list[str]) -> list[Path]:
    """Refuse what would silently send something else: an empty path (``""``, an unset
    variable) would otherwise mean the current directory."""
    if any(p.strip() == "" for p in paths):
        usage('an empty path was given (an unset variable?); to send this directory, say "."')
    return [Path(p) for p in paths]


def read_text(text: str) -> str:
    """``--text -`` reads the message from standard input."""
    if text != "-":
        return text
    if sys.stdin is None:
        usage("--text - reads standard input, and there is none")
    try:
        data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        usage(f"--text - could not read standard input: {(exc.strerror or str(exc)).lower()}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        usage("--text - needs UTF-8 text on standard input; send binary data as a file: send -")


def usage_error_class() -> type[Exception]:
    """typer's (vendored) click UsageError, reached through a public name."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "UsageError":
            return cls
    raise AssertionError("typer.BadParameter is no longer a UsageError")


def many_without_count(args: list[str]) -> list[str]:
    """``--many`` takes an optional N: a bare ``--many`` (not followed by a number) means
    ``--many=0``, until Ctrl-C. click has no optional option values, so it is spelled out
    here, before parsing."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        if arg == "--many" and not (i + 1 < len(args) and args[i + 1].isdecimal()):
            out.append("--many=0")
        else:
            out.append(arg)
    return out
