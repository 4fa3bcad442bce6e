"""Phase A's first ceiling: the smallest WebSocket echo server, on the ``websockets`` library.

It parses each JSON frame and sends it back, as a reply would be built and sent; it runs on
uvloop, as uvicorn does. ``python bench/load_echo_ws.py --port P``
"""

import argparse
import json

import uvloop
from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for raw in ws:
        await ws.send(json.dumps(json.loads(raw), ensure_ascii=False))


async def main(port: int) -> None:
    # No compression, as Kefu is served (README: --ws-per-message-deflate false).
    async with serve(
        echo, "127.0.0.1", port, compression=None, ping_interval=20, max_queue=32
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
