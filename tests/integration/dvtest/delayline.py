#!/usr/bin/python3
"""A TCP relay that delays one direction: what the client sends reaches the
target DELAY_MS later (in order); the target's answers come back at once.
It stands in for `tc qdisc ... netem delay` on kernels without sch_netem.

    delayline.py LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT DELAY_MS

Prints "ready" on stdout once listening.  SIGUSR1 sets the delay to 0 (for
bytes that arrive from then on), SIGUSR2 back to DELAY_MS; SIGTERM ends it.
"""

import asyncio
import signal
import sys

state = {"delay": 0.0}


async def delayed(reader, writer, loop):
    """reader -> writer, each chunk held until its arrival + delay."""
    q = asyncio.Queue()

    async def sender():
        while True:
            when, data = await q.get()
            if data is None:
                break
            wait = when - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    task = asyncio.ensure_future(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((loop.time() + state["delay"], data))
    finally:
        q.put_nowait((0, None))
        try:
            await task
        except (ConnectionError, OSError):
            pass


async def plain(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()


def main():
    laddr, lport, taddr, tport, delay_ms = sys.argv[1:6]
    full = int(delay_ms) / 1000.0
    state["delay"] = full
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def handle(creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection(taddr, int(tport))
        except OSError:
            cwriter.close()
            return
        a = asyncio.ensure_future(delayed(creader, uwriter, loop))
        b = asyncio.ensure_future(plain(ureader, cwriter))
        try:
            await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (a, b):
                t.cancel()
            for w in (cwriter, uwriter):
                try:
                    w.close()
                except (ConnectionError, OSError):
                    pass

    server = loop.run_until_complete(asyncio.start_server(handle, laddr, int(lport)))
    loop.add_signal_handler(signal.SIGUSR1, lambda: state.update(delay=0.0))
    loop.add_signal_handler(signal.SIGUSR2, lambda: state.update(delay=full))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    print("ready", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
