"""A TLS-terminating front for the NAT lab: accepts TLS on LISTEN_HOST:LISTEN_PORT with a
certificate from the lab's CA and pipes each connection, decrypted, to TARGET_HOST:TARGET_PORT
(the mailbox server), as a public server's reverse proxy does. Prints "ready" once listening.

    python -m tests.tls_front LISTEN_HOST LISTEN_PORT CERT KEY TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(listen: str, port: int, cert: str, key: str, target: str, target_port: int) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen, port, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port, cert, key, target, target_port = sys.argv[1:7]
    asyncio.run(main(host, int(port), cert, key, target, int(target_port)))
