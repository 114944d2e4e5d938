"""Real Python clients through the gateway, as cryptofeed uses them.

Usage: gateway_clients.py GATEWAY_PORT HTTP_URL

Prints one JSON line per client, each with the exchange in the user name:
- aiohttp GET through the gateway as an HTTP proxy (aiohttp forwards an http:// URL
  with an absolute URI);
- requests, the same way;
- a websockets client through SOCKS5h (python-socks);
- a websockets client that takes its proxy from `ws_proxy` in the environment, as
  cryptofeed's streams do (an HTTP CONNECT).
The WebSocket echo server answers with the peer address it saw, so the test can tell
which upstream carried it.
"""

import asyncio
import json
import sys

import os

import aiohttp
import requests
import websockets


async def main(gateway_port: int, http_url: str) -> None:
    proxy_http = f"http://binance:x@127.0.0.1:{gateway_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url, proxy=proxy_http) as response:
            body = await response.text()
            print(json.dumps({"client": "aiohttp", "status": response.status, "body": body}))

    def get_with_requests() -> dict:
        proxies = {"http": proxy_http, "https": proxy_http}
        r = requests.get(http_url.replace("/aiohttp", "/requests"), proxies=proxies, timeout=10)
        return {"client": "requests", "status": r.status_code, "body": r.text}

    print(json.dumps(await asyncio.to_thread(get_with_requests)))

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
        os.environ["ws_proxy"] = proxy_http
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("from env")
            reply = await asyncio.wait_for(ws.recv(), 10)
            print(json.dumps({"client": "websockets env", "reply": reply}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
