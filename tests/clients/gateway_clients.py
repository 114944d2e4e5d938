"""Real Python clients through the gateway, as cryptofeed uses them.

Usage: gateway_clients.py GATEWAY_PORT HTTP_URL

Prints one JSON line per client: aiohttp GET through the gateway as an HTTP proxy
(aiohttp forwards an http:// URL with an absolute URI), then a websockets client
through SOCKS5h, both with the exchange in the user name. The WebSocket echo server
answers with the peer address it saw, so the test can tell which upstream carried it.
"""

import asyncio
import json
import sys

import aiohttp
import websockets


async def main(gateway_port: int, http_url: str) -> None:
    proxy_http = f"http://binance:x@127.0.0.1:{gateway_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url, proxy=proxy_http) as response:
            body = await response.text()
            print(json.dumps({"client": "aiohttp", "status": response.status, "body": body}))

    async def echo(ws):
        peer = ws.remote_address[0]
        async for message in ws:
            await ws.send(f"{message} via {peer}")

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proxy_socks = f"socks5h://binance:x@127.0.0.1:{gateway_port}"
        async with websockets.connect(f"ws://127.0.0.1:{port}/", proxy=proxy_socks) as ws:
            await ws.send("hello")
            reply = await asyncio.wait_for(ws.recv(), 10)
            print(json.dumps({"client": "websockets", "reply": reply}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
