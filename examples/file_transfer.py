"""Send a file over rudp and check its SHA-256 on arrival.

``python examples/file_transfer.py PATH`` starts a local receiver and a sender in
one process, moves the file over UDP, and prints both digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time

import rudp

CHUNK = 1 << 20


async def main(path: str) -> int:
    result: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        n = 0
        while data := await reader.read(CHUNK):
            h.update(data)
            n += len(data)
        writer.write(h.hexdigest().encode())  # report the digest back, then close
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        result.set_result((n, h.hexdigest()))

    server = await rudp.start_server(receive, "127.0.0.1", 0)
    port = server.addresses[0][1]
    reader, writer = await rudp.open_connection("127.0.0.1", port)
    sent = hashlib.sha256()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sent.update(chunk)
            writer.write(chunk)
            await writer.drain()
    writer.write_eof()
    remote = (await reader.read()).decode()
    elapsed = time.perf_counter() - t0
    size, _ = await result
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    print(f"sent     {sent.hexdigest()}")
    print(f"received {remote}")
    print(f"{size} bytes in {elapsed:.2f} s ({size / elapsed / 1e6:.1f} MB/s)")
    ok = remote == sent.hexdigest()
    print("SHA-256 OK" if ok else "SHA-256 MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
