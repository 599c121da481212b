"""A WebSocket upstream the project did not write the server of: Debian's
python3-websockets, speaking the upstream protocol of DESIGN.md (one request
body per text message; the answer is the bytes of an SSE stream, in frames
of at most CHUNK bytes cut anywhere, ending with `data: [DONE]`).

usage: /usr/bin/python3 ws_upstream.py PORT CHUNK ANSWER_FILE
The answer file holds the SSE bytes sent for every request.  Prints
"listening" once it accepts connections; counts requests in
ANSWER_FILE.requests."""
import asyncio
import sys

import websockets

PORT, CHUNK, ANSWER = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


async def serve(websocket, path=None):
    async for message in websocket:
        assert message.startswith("{"), message
        with open(ANSWER + ".requests", "a") as f:
            f.write(message + "\n")
        data = open(ANSWER, "rb").read().decode()
        for at in range(0, len(data), CHUNK):
            await websocket.send(data[at:at + CHUNK])


async def main():
    async with websockets.serve(serve, "127.0.0.1", PORT, ping_interval=None):
        print("listening", flush=True)
        await asyncio.Future()


asyncio.run(main())
