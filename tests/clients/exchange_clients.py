"""Real cryptofeed and ccxt against the stand-in Binance, set up as the README says.

Usage: exchange_clients.py CLIENT

CLIENT is one of:
- cryptofeed: a FeedHandler with Binance BTC-USDT trades and book. `FEED_HTTP_PROXY`,
  when set, is the Feed's `http_proxy`; `FEED_CHANNELS` (default `trades,l2_book`)
  picks the channels. Everything else comes from the environment.
- ccxt-sync, ccxt-async, ccxt-pro: `ccxt.binance(config)` with `CCXT_CONFIG` (JSON) as
  its config; markets load, then a ticker (sync, async) or a trade (pro).

Prints one JSON line of what it got, and exits 0; exits 1 after 40 s without it.
"""

import asyncio
import json
import os
import sys
import threading


def done(result: dict) -> None:
    print(json.dumps(result), flush=True)
    # cryptofeed's FeedHandler runs until a signal; a test client stops when it has
    # what it came for.
    os._exit(0)


def give_up_later() -> None:
    def fail():
        print(json.dumps({"error": "nothing after 40 s"}), flush=True)
        os._exit(1)

    timer = threading.Timer(40, fail)
    timer.daemon = True
    timer.start()


def run_cryptofeed() -> None:
    from cryptofeed import FeedHandler
    from cryptofeed.defines import L2_BOOK, TRADES
    from cryptofeed.exchanges import Binance

    wanted = os.environ.get("FEED_CHANNELS", "trades,l2_book").split(",")
    channels = {"trades": TRADES, "l2_book": L2_BOOK}
    got = {}

    async def on_trade(trade, receipt):
        got["trade"] = f"{trade.symbol} {trade.price}"
        check()

    async def on_book(book, receipt):
        got["book"] = f"{book.symbol} bids={len(book.book.bids)}"
        check()

    def check():
        if all(c in got for c in ("trade" if w == "trades" else "book" for w in wanted)):
            done(got)

    kwargs = {}
    if os.environ.get("FEED_HTTP_PROXY"):
        kwargs["http_proxy"] = os.environ["FEED_HTTP_PROXY"]
    feed = Binance(
        symbols=["BTC-USDT"],
        channels=[channels[w] for w in wanted],
        callbacks={TRADES: on_trade, L2_BOOK: on_book},
        **kwargs,
    )
    handler = FeedHandler(config={"log": {"filename": os.devnull, "level": "WARNING"}})
    handler.add_feed(feed)
    handler.run()


def run_ccxt_sync(config: dict) -> None:
    import ccxt

    exchange = ccxt.binance(config)
    exchange.load_markets()
    ticker = exchange.fetch_ticker("BTC/USDT")
    done({"markets": len(exchange.markets), "last": ticker["last"]})


async def run_ccxt_async(config: dict) -> None:
    import ccxt.async_support as ccxt

    exchange = ccxt.binance(config)
    try:
        await exchange.load_markets()
        ticker = await exchange.fetch_ticker("BTC/USDT")
        result = {"markets": len(exchange.markets), "last": ticker["last"]}
    finally:
        await exchange.close()
    done(result)


async def run_ccxt_pro(config: dict) -> None:
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.binance(config)
    try:
        trades = await exchange.watch_trades("BTC/USDT")
        result = {"markets": len(exchange.markets), "trade": trades[-1]["price"]}
    finally:
        await exchange.close()
    done(result)


def main() -> None:
    give_up_later()
    client = sys.argv[1]
    config = json.loads(os.environ.get("CCXT_CONFIG", "{}"))
    if client == "cryptofeed":
        run_cryptofeed()
    elif client == "ccxt-sync":
        run_ccxt_sync(config)
    elif client == "ccxt-async":
        asyncio.run(run_ccxt_async(config))
    elif client == "ccxt-pro":
        asyncio.run(run_ccxt_pro(config))
    else:
        sys.exit(f"unknown client {client}")


if __name__ == "__main__":
    main()
