"""Run p2pshare.lan in a lab namespace: ``advertise NAMEPLATE ADDRESS PORT`` (until stdin
closes) or ``browse NAMEPLATE`` (prints one JSON line with what it found)."""

from __future__ import annotations

import asyncio
import json
import sys

from p2pshare import lan


async def _advertise(nameplate: str, address: str, port: int) -> None:
    async with lan.advertise(nameplate, address, port) as advertised:
        print("advertised" if advertised else "not advertised", flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def _browse(nameplate: str, timeout_s: float) -> None:
    found = await lan.browse(nameplate, timeout_s)
    print(json.dumps([{"url": a.url, "host": a.host, "nameplate": a.nameplate} for a in found]))


def main() -> None:
    if sys.argv[1] == "advertise":
        asyncio.run(_advertise(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(_browse(sys.argv[2], float(sys.argv[3])))


if __name__ == "__main__":
    main()
