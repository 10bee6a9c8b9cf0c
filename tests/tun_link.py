"""A cable with delay and loss, in user space: what ``tc netem`` would do, for kernels
without the netem qdisc (this project's machines have none, and no loadable modules).

Run as ``python -m tests.tun_link NS_A NS_B DELAY_S LOSS``: opens a TUN device in each of
two existing network namespaces (``tunA`` in NS_A, ``tunB`` in NS_B), prints ``ready``, then
copies every IP packet from one to the other after ``DELAY_S`` seconds, dropping a fraction
``LOSS`` of them at random, each way. Packets keep their order. The test gives the devices
addresses (10.9.0.1 peer 10.9.0.2, and back) and starts the peers in the namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import random
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


def open_tun(netns: str, name: str) -> int:
    """A TUN device called ``name`` in namespace ``netns`` (the fd stays valid after this
    process moves to another namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ns_fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(ns_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    finally:
        os.close(ns_fd)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def relay(fd_a: int, fd_b: int, delay: float, loss: float) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(0)

    def write(fd: int, packet: bytes) -> None:
        with contextlib.suppress(OSError):  # the device is down (teardown): a lost packet
            os.write(fd, packet)

    def pump(src: int, dst: int) -> None:
        while True:
            try:
                packet = os.read(src, 65536)
            except BlockingIOError:
                return
            if rng.random() >= loss:
                loop.call_later(delay, write, dst, packet)

    loop.add_reader(fd_a, pump, fd_a, fd_b)
    loop.add_reader(fd_b, pump, fd_b, fd_a)
    await asyncio.Event().wait()


def main() -> None:
    ns_a, ns_b, delay, loss = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    fd_a = open_tun(ns_a, "tunA")
    fd_b = open_tun(ns_b, "tunB")
    print("ready", flush=True)
    asyncio.run(relay(fd_a, fd_b, delay, loss))


if __name__ == "__main__":
    main()
