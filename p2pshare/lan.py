"""Finding the sender's embedded rendezvous server on the local network (mDNS / DNS-SD).

::

    sender (embedded server on 192.168.1.20:41234)         receiver: p2pshare receive 7-guitar-ocean
      │ advertise _p2pshare._tcp.local.                      │ browse _p2pshare._tcp.local.
      │   instance "p2pshare 7 on alice-laptop"              │   for at most BROWSE_S,
      │   TXT v=1 nameplate=7, SRV port 41234, A 192...  ──> │   keep those with nameplate=7
      │                                                      │ exactly one: ws://192.168.1.20:41234
      │<══════════ the usual rendezvous, PAKE on the whole code ═══════════════│

What the network learns from an advertisement is the nameplate (the number before the first
dash), the server's address and port, and the machine's host name: never the words, nor
anything derived from them (an advertised hash of the code would let anyone on the LAN try
all 65,536 two-word codes offline). So two advertisements of the same nameplate cannot be
told apart by the code: :func:`choose` refuses to guess between them, because a PAKE run
against the wrong sender fails and cancels that sender's code.

An advert can name any address, and the receiver would send it a websocket upgrade: so only
addresses on a network one of this host's interfaces is on are followed, never loopback
(:func:`reachable`); a host on the LAN cannot point the receiver at its own local services
(127.0.0.1) nor at machines beyond the LAN.

Every embedded server would otherwise hand out nameplate 1, so the sender picks its nameplate
at random (:func:`random_nameplate`): two senders on one network then collide once in
:data:`LAN_NAMEPLATES`, and the receiver notices when they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from p2pshare.errors import NoSuchCodeError, SignallingError
from p2pshare.files import printable

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_p2pshare._tcp.local."
TXT_VERSION = "1"
BROWSE_S = 3.0
"""How long a receiver looks for the sender before saying it found none."""
SETTLE_S = 1.5
"""After a first match, how long to listen for a second one with the same nameplate. The
browser's second query goes out after one second, and measured between two namespaces a
remote sender was often first heard in answer to it (a sender on the same host at once)."""
LAN_NAMEPLATES = 999
"""Nameplates an embedded server draws from: short codes, rare collisions."""


@dataclass(frozen=True)
class Advert:
    """One sender's advertisement, as the receiver saw it."""

    nameplate: str
    url: str
    """The rendezvous server: ``ws://ADDRESS:PORT``."""
    host: str
    """The sender machine's name, to tell two senders apart (printable)."""


def random_nameplate(rng: Callable[[int], int] = secrets.randbelow) -> str:
    """A nameplate for an embedded server: 1 to :data:`LAN_NAMEPLATES`, at random."""
    return str(rng(LAN_NAMEPLATES) + 1)


def instance_name(nameplate: str, host: str, port: int) -> str:
    """The DNS-SD instance name: unique per sender (two senders on one machine differ by
    port), readable in a service browser."""
    label = f"p2pshare {nameplate} on {host[:40]} port {port}"
    return f"{label}.{SERVICE_TYPE}"


def properties(nameplate: str, host: str) -> dict[str, str]:
    return {"v": TXT_VERSION, "nameplate": nameplate, "host": host[:63]}


def ws_url(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"ws://{shown}:{port}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def local_networks() -> list[Network]:
    """The networks this host's interfaces are on (address and prefix), loopback excluded."""
    import ifaddr  # zeroconf's own dependency for the same question

    networks: list[Network] = []
    try:
        adapters = ifaddr.get_adapters()
    except Exception as exc:  # an odd system: no advert is followed (the full command works)
        logger.info("cannot list this host's networks: %s", exc)
        return networks
    for adapter in adapters:
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                network = ipaddress.ip_network(f"{address}/{ip.network_prefix}", strict=False)
            except ValueError:
                continue
            if not network.network_address.is_loopback:
                networks.append(network)
    return networks


def reachable(address: str, networks: Sequence[Network]) -> bool:
    """Whether an advertised ``address`` may be followed: on one of ``networks`` (this
    host's), and not loopback, unspecified or multicast (IPv4-mapped IPv6 checked as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def parse_advert(
    props: Mapping[bytes, bytes | None],
    addresses: list[str],
    port: int | None,
    networks: Sequence[Network],
) -> Advert | None:
    """An :class:`Advert` from what zeroconf resolved, or None if it is not one of ours
    (another version, no address, garbage): anyone on the LAN may advertise anything.
    Only addresses :func:`reachable` on ``networks`` (this host's) are kept."""
    try:
        decoded = {k.decode(): (v or b"").decode() for k, v in props.items()}
    except UnicodeDecodeError:
        return None
    nameplate = decoded.get("nameplate", "")
    if decoded.get("v") != TXT_VERSION or not nameplate.isdigit() or len(nameplate) > 6:
        return None
    if port is None or not 0 < port < 65536:
        return None
    # Prefer IPv4: the embedded server listens on one IPv4 address.
    usable = sorted(
        (a for a in addresses if _is_ip(a) and reachable(a, networks)),
        key=lambda a: ipaddress.ip_address(a).version,
    )
    if not usable:
        return None
    host = printable(decoded.get("host", "")[:63]) or usable[0]
    return Advert(nameplate.lstrip("0") or "0", ws_url(usable[0], port), host)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def choose(nameplate: str, found: list[Advert], waited_s: float) -> Advert:
    """The one sender advertising ``nameplate``; none or several is an error that says what
    to do (the sender's screen always shows the full command, with --server)."""
    matches = list({a.url: a for a in found if a.nameplate == nameplate}.values())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NoSuchCodeError(
            f"no sender with code {nameplate}-... found on this network in {waited_s:g} s "
            "(check the code; if multicast is blocked here, run the full command shown on "
            "the sender's screen, with --server)"
        )
    hosts = ", ".join(f"{a.host} ({a.url})" for a in matches)
    raise SignallingError(
        f"several senders on this network use code {nameplate}-...: {hosts}; to avoid "
        "cancelling the wrong one, run the full command shown on the sender's screen, "
        "with --server"
    )


@contextlib.asynccontextmanager
async def advertise(nameplate: str, address: str, port: int) -> AsyncIterator[bool]:
    """Advertise the embedded server while the block runs; yields whether that could start
    (a machine without multicast still sends: the receiver then needs the full command).

    Registration probes the network for about a second first (RFC 6762); it runs in the
    background, so that the code is printed at once: the receiver looks for BROWSE_S."""
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    host = socket.gethostname().split(".")[0] or "p2pshare"
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        instance_name(nameplate, host, port),
        addresses=[ipaddress.ip_address(address).packed],
        port=port,
        properties=properties(nameplate, host),
        # A host name of its own: the machine's (perhaps announced by avahi already) would
        # merge our address records with another program's, or another sender's.
        server=f"p2pshare-{port}-{host}.local."[:255],
    )
    version = IPVersion.V6Only if ":" in address else IPVersion.V4Only
    try:
        zc = AsyncZeroconf(interfaces=[address], ip_version=version)
    except Exception as exc:  # no multicast here: the full command still works
        logger.info("cannot advertise on the local network: %s", exc)
        yield False
        return

    async def register() -> None:
        announced = await zc.async_register_service(info, allow_name_change=True)
        await announced
        logger.info("advertised on the local network as %s", printable(info.name))

    registration = asyncio.ensure_future(register())
    try:
        yield True
    finally:
        if registration.done() and registration.exception() is None:
            with contextlib.suppress(Exception):
                await zc.async_unregister_service(info)
        elif not registration.done():
            registration.cancel()
            await asyncio.gather(registration, return_exceptions=True)
        else:
            # zeroconf raises assorted errors on odd networks; the full command still works.
            logger.info("cannot advertise on the local network: %r", registration.exception())
        with contextlib.suppress(Exception):
            await zc.async_close()


@contextlib.asynccontextmanager
async def advertise_server(nameplate: str, url: str) -> AsyncIterator[bool]:
    """:func:`advertise` for the embedded server at ``url`` (``ws://ADDRESS:PORT``); a
    loopback address is not advertised (nobody else could reach it)."""
    parsed = urlsplit(url)
    if parsed.hostname is None or parsed.port is None:
        yield False
        return
    if ipaddress.ip_address(parsed.hostname).is_loopback:
        yield False
        return
    async with advertise(nameplate, parsed.hostname, parsed.port) as advertised:
        yield advertised


async def browse(
    nameplate: str, timeout_s: float = BROWSE_S, settle_s: float = SETTLE_S
) -> list[Advert]:
    """Advertisements of ``nameplate`` seen within ``timeout_s``; returns ``settle_s`` after
    the first one (long enough to notice a second sender with the same nameplate)."""
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    loop = asyncio.get_running_loop()
    found: dict[str, Advert] = {}
    first = asyncio.Event()
    networks = local_networks()
    lookups: set[asyncio.Task[None]] = set()

    async def resolve(zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf, 1500):
            return
        advert = parse_advert(
            dict(info.properties), info.parsed_scoped_addresses(), info.port, networks
        )
        logger.debug("mDNS: %s -> %s", printable(name), advert)
        if advert is not None and advert.nameplate == nameplate:
            found[name] = advert
            first.set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        logger.debug("mDNS: %s %s", state_change, printable(name))
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = loop.create_task(resolve(zeroconf, name))
            lookups.add(task)
            task.add_done_callback(lookups.discard)

    try:
        zc = AsyncZeroconf()
    except Exception as exc:  # no multicast here: say "not found", with the full command
        logger.info("cannot browse the local network: %s", exc)
        return []
    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        deadline = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await first.wait()
        remaining = deadline - loop.time()
        if first.is_set() and remaining > 0:
            await asyncio.sleep(min(settle_s, remaining))
    finally:
        await browser.async_cancel()
        for task in list(lookups):
            task.cancel()
        await asyncio.gather(*lookups, return_exceptions=True)
        await zc.async_close()
    return list(found.values())


async def find_server(nameplate: str, timeout_s: float = BROWSE_S) -> str:
    """The URL of the one sender on this network advertising ``nameplate``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await browse(nameplate, timeout_s)
    return choose(nameplate, found, round(loop.time() - started, 1)).url
