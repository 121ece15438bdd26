"""A task's network interface on a shared loopback: TCP relays from the task's address (what
other tasks, the load balancer and the scraper reach, its ENI on AWS) to its loopback stand-in.
A container that binds every interface (`0.0.0.0:<port>`) gets a relay for that port; one
that binds `127.0.0.1` gets none, so other tasks cannot reach it, as on AWS.
"""
import asyncio
import threading


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Relays:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.servers = {}

    def open(self, address, local, port):
        async def handle(reader, writer):
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(local, port)
            except OSError:
                writer.close()  # nothing listens behind the interface: the peer sees a close
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        async def start():
            return await asyncio.start_server(handle, address, port, reuse_address=True, backlog=1024)

        self.servers[(address, port)] = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self, address):
        for key in [k for k in self.servers if k[0] == address]:
            server = self.servers.pop(key)
            self.loop.call_soon_threadsafe(server.close)


RELAYS = None


def relays():
    global RELAYS
    if RELAYS is None:
        RELAYS = Relays()
    return RELAYS
