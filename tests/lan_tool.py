"""Run p2pshare.lan in a lab namespace: ``advertise NAMEPLATE ADDRESS PORT`` (until stdin
closes) or ``browse NAMEPLATE`` (prints one JSON line with what it found). Hostile helpers:
``advertise-at NAMEPLATE INTERFACE ADDRESS PORT`` announces, from INTERFACE, a sender at any
ADDRESS (loopback, another network); ``listen PORT`` holds a TCP socket on 127.0.0.1:PORT
until stdin closes, then prints ``connected`` if anyone connected to it, else ``nothing``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import sys

from p2pshare import lan


async def _advertise(nameplate: str, address: str, port: int) -> None:
    async with lan.advertise(nameplate, address, port) as advertised:
        print("advertised" if advertised else "not advertised", flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def _browse(nameplate: str, timeout_s: float) -> None:
    found = await lan.browse(nameplate, timeout_s)
    print(json.dumps([{"url": a.url, "host": a.host, "nameplate": a.nameplate} for a in found]))


async def _advertise_at(nameplate: str, interface: str, address: str, port: int) -> None:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    info = AsyncServiceInfo(
        lan.SERVICE_TYPE,
        lan.instance_name(nameplate, "mallory", port),
        addresses=[ipaddress.ip_address(address).packed],
        port=port,
        properties=lan.properties(nameplate, "mallory"),
        server=f"mallory-{port}.local.",
    )
    zc = AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
    await (await zc.async_register_service(info))
    print("advertised", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await zc.async_close()


def _listen(port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        print("listening", flush=True)
        sys.stdin.read()
        server.setblocking(False)
        try:
            server.accept()
        except BlockingIOError:
            print("nothing", flush=True)
        else:
            print("connected", flush=True)


def main() -> None:
    if sys.argv[1] == "advertise":
        asyncio.run(_advertise(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1] == "advertise-at":
        asyncio.run(_advertise_at(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    elif sys.argv[1] == "listen":
        _listen(int(sys.argv[2]))
    else:
        asyncio.run(_browse(sys.argv[2], float(sys.argv[3])))


if __name__ == "__main__":
    main()
