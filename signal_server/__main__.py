"""Command line of ``p2pshare-signal`` (also ``python -m signal_server``).

argparse rather than typer keeps the server deployable with ``websockets`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from signal_server import __version__, eventloop
from signal_server.client_address import parse_network, split_specs
from signal_server.redis_registry import RedisUnavailableError
from signal_server.server import ServerSettings, start_server

logger = logging.getLogger("signal_server")
ENV_TURN_SECRET = "P2PSHARE_TURN_SECRET"  # noqa: S105 - a variable name
ENV_REDIS = "P2PSHARE_SIGNAL_REDIS"
ENV_TRUSTED_PROXY = "P2PSHARE_TRUSTED_PROXY"


def _count(text: str) -> int:
    return int(_seconds(text, integer=True))


def _seconds(text: str, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _network(text: str) -> str:
    try:
        return str(parse_network(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    port = _count(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0 to 65535): {text!r}")
    return port


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of ours; --help shows the usage.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    d = ServerSettings()
    p = _Parser(
        prog="p2pshare-signal",
        description="Rendezvous server for p2pshare: pairs a sender and a receiver by the "
        "number at the start of their code and relays their end-to-end encrypted signalling. "
        "It never sees file data, the secret words of a code, or keys.",
        epilog="A limit of 0 means unlimited. Put a TLS reverse proxy in front for wss://.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--host",
        default=d.host,
        help="address to listen on; 0.0.0.0 or :: for all interfaces (default: %(default)s)",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=d.port,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    p.add_argument(
        "--max-message-bytes",
        type=_count,
        default=d.max_message_bytes,
        help="largest frame a client may send (default: %(default)s)",
    )
    p.add_argument(
        "--max-messages-per-room",
        type=_count,
        default=d.max_messages_per_room,
        help="messages relayed in one room before it is closed (default: %(default)s)",
    )
    p.add_argument(
        "--max-rooms",
        type=_count,
        default=d.max_rooms,
        help="rooms open at once (default: %(default)s)",
    )
    p.add_argument(
        "--max-conns-per-ip",
        type=_count,
        default=d.max_conns_per_ip,
        help="simultaneous connections from one address (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=_count,
        default=d.max_connections,
        help="sockets open at once, half-open ones included (default: as many as the "
        "open-file limit allows, less a reserve; the soft limit is raised to the hard one)",
    )
    p.add_argument(
        "--joins-per-ip-per-minute",
        type=_count,
        default=d.joins_per_ip_per_minute,
        help="rooms one address may open or join per minute (default: %(default)s)",
    )
    p.add_argument(
        "--room-ttl",
        type=_seconds,
        default=d.room_ttl_s,
        metavar="SECONDS",
        help="how long a code waits for its peer (default: %(default)s)",
    )
    p.add_argument(
        "--max-receivers-per-room",
        type=_count,
        default=d.max_receivers_per_room,
        help="receivers at once in a room opened by send --many (default: %(default)s)",
    )
    p.add_argument(
        "--max-unproven-per-address",
        type=_count,
        default=d.max_unproven_per_address,
        help="receivers one address may hold in a send --many room before the sender "
        "answered their key confirmation (default: %(default)s)",
    )
    p.add_argument(
        "--many-room-ttl",
        type=_seconds,
        default=d.many_room_ttl_s,
        metavar="SECONDS",
        help="how long a send --many room lives at most (default: %(default)s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=d.idle_timeout_s,
        metavar="SECONDS",
        help="paired room with no messages is closed after (default: %(default)s)",
    )
    p.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=d.handshake_timeout_s,
        metavar="SECONDS",
        help="time to open the websocket and join a room (default: %(default)s)",
    )
    p.add_argument(
        "--ping-interval",
        type=_seconds,
        default=d.ping_interval_s,
        metavar="SECONDS",
        help="keepalive ping interval, 0 to disable (default: %(default)s)",
    )
    p.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=d.ping_timeout_s,
        metavar="SECONDS",
        help="close if a ping is not answered in (default: %(default)s)",
    )
    p.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="URL",
        help="STUN server to hand to clients, e.g. stun:stun.example.org:3478 (repeatable)",
    )
    p.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="TURN server to hand to clients with short-lived credentials, e.g. "
        "turn:turn.example.org:3478?transport=udp (repeatable; needs --turn-secret)",
    )
    p.add_argument(
        "--turn-secret",
        default=os.environ.get(ENV_TURN_SECRET),
        metavar="SECRET",
        help="coturn's static-auth-secret (use-auth-secret); better given in "
        f"{ENV_TURN_SECRET}, which other users cannot see",
    )
    p.add_argument(
        "--turn-ttl",
        type=_count,
        default=d.turn_ttl_s,
        metavar="SECONDS",
        help="lifetime of the TURN credentials handed out (default: %(default)s)",
    )
    p.add_argument(
        "--redis",
        default=os.environ.get(ENV_REDIS),
        metavar="URL",
        help="share rooms with other instances through this Redis, e.g. "
        f"redis://127.0.0.1:6379/0 (also {ENV_REDIS}; default: rooms in this process)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        type=_network,
        default=None,
        metavar="CIDR",
        help="a reverse proxy (address or network, e.g. 127.0.0.1 or 10.0.0.0/8) whose "
        "X-Forwarded-For names the client: every per-address limit and log line then uses "
        "the right-most address in it that is not itself a trusted proxy; from anyone else "
        f"the header is ignored (repeatable; also {ENV_TRUSTED_PROXY}, separated by commas; "
        "default: none)",
    )
    p.add_argument(
        "--static-dir",
        default=None,
        metavar="DIR",
        help="folder of the browser page served at / (default: the one installed with the server)",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_bytes,
        max_messages_per_room=args.max_messages_per_room,
        max_rooms=args.max_rooms,
        max_conns_per_ip=args.max_conns_per_ip,
        max_connections=args.max_connections,
        joins_per_ip_per_minute=args.joins_per_ip_per_minute,
        room_ttl_s=args.room_ttl,
        max_receivers_per_room=args.max_receivers_per_room,
        max_unproven_per_address=args.max_unproven_per_address,
        many_room_ttl_s=args.many_room_ttl,
        idle_timeout_s=args.idle_timeout,
        handshake_timeout_s=args.handshake_timeout,
        ping_interval_s=args.ping_interval,
        ping_timeout_s=args.ping_timeout,
        stun_urls=tuple(args.stun),
        turn_urls=tuple(args.turn),
        turn_secret=args.turn_secret,
        turn_ttl_s=args.turn_ttl,
        static_dir=args.static_dir,
        redis_url=args.redis or None,
        trusted_proxies=tuple(args.trusted_proxy or ()),
    )


async def serve_until_signalled(settings: ServerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_server(settings) as running:
        print(f"listening on {running.url}", flush=True)
        page = page_url(running.url, running.signal.site.root)
        if page is not None:
            print(f"the page: {page} (https:// when behind a TLS proxy)", flush=True)
        if settings.trusted_proxies:
            logger.info(
                "client addresses from X-Forwarded-For of %s", ", ".join(settings.trusted_proxies)
            )
        await stop.wait()
        logger.info("shutting down (%d rooms open)", len(running.signal.registry))


def page_url(ws_url: str, root: Path) -> str | None:
    """Where a browser opens the page this server serves (None when it serves none): the
    same host and port as ``ws_url``, over HTTP. Listening on every address (0.0.0.0, ::),
    no one address is the right one to open: the line says which part to fill in."""
    if not (root / "index.html").is_file():
        return None
    host, _, port = ws_url.removeprefix("ws://").rstrip("/").rpartition(":")
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host.strip("[]")).is_unspecified:
            host = "<this machine's address>"
    return f"http://{host}:{port}/"


def raise_open_file_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every connection is a descriptor, and
    systemd's usual soft limit of 1,024 is a few hundred sockets of a public server."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        # macOS refuses RLIM_INFINITY for the soft limit; settle for what it allows.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))
    logger.debug("open-file limit %s -> %s", soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.trusted_proxy is None:
        # The flags, when given, replace the environment's list rather than add to it.
        try:
            env = split_specs(os.environ.get(ENV_TRUSTED_PROXY, ""))
            args.trusted_proxy = [str(parse_network(spec)) for spec in env]
        except ValueError as exc:
            parser.error(f"{ENV_TRUSTED_PROXY}: {exc}")
    if args.redis:
        try:
            import redis  # noqa: F401
        except ImportError:
            parser.error("--redis needs the redis package: in the clone, pip install '.[redis]'")
    if args.turn and not args.turn_secret:
        parser.error(f"--turn needs --turn-secret (or {ENV_TURN_SECRET}) to mint credentials")
    for url in (*args.stun, *args.turn):
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            parser.error(f"not a STUN or TURN URL: {url}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":
        # websockets logs "server listening on" (we print that line ourselves) and every
        # connection at info; ours are the counts that matter.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    raise_open_file_limit()
    try:
        eventloop.run(serve_until_signalled(settings_from_args(args)))
    except OSError as exc:
        print(
            f"p2pshare-signal: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    except RedisUnavailableError as exc:
        print(f"p2pshare-signal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
