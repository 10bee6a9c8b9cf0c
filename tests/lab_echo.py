"""A UDP echo for the lab: answers every datagram with ``echo:`` and the same bytes, from
the address it was sent to (one socket per address, so the answer's source is that address,
whatever the routing would pick). ``python -m tests.lab_echo PORT ADDRESS...``; prints
``ready``."""

from __future__ import annotations

import selectors
import socket
import sys


def main() -> None:
    port = int(sys.argv[1])
    selector = selectors.DefaultSelector()
    for address in sys.argv[2:]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        selector.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            data, addr = ready.recvfrom(2048)
            ready.sendto(b"echo:" + data, addr)


if __name__ == "__main__":
    main()
