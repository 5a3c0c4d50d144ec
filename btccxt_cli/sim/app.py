"""The exchange simulator's public entry point: one aiohttp server per simulated exchange, on
127.0.0.1 (``docs/simulator.md``).

``Simulator`` runs inside an event loop you own (``await sim.start()``); ``SimThread`` runs one on
its own loop in a daemon thread for synchronous code (tests, the data core, benchmarks)::

    with SimThread(exchanges=("binance",)) as sim:
        ex = make_exchange("binance", sim_url=sim.url("binance"))   # client side, by URL only
        sim.drop("binance")                                         # a fault
        sim.truth("binance", "BTC/USDT", "1m", since, until)        # what is true

Where each part lives (each module imports only the ones above it in this list)::

    wire.py        shared types: Connection, Stream, PrivateSession, Stats, JSON, ServerAPI
    venues/        the six exchanges' wire protocols
    scheduler.py   candle streams and the push scheduler
    sessions.py    private sockets bound to an API key, the matcher task
    server.py      ExchangeServer: one exchange's port, middleware, sockets, socket faults
    control.py     the /_sim control API of one server
    simulator.py   Simulator: all exchanges, truth, stats, faults, orders, balances
    thread.py      SimThread: the Simulator from other threads (no copies of its methods)

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from btccxt_cli.sim.server import ExchangeServer
from btccxt_cli.sim.simulator import Simulator
from btccxt_cli.sim.thread import SimThread
from btccxt_cli.sim.wire import Connection, PrivateSession, Stream, StreamKey

__all__ = ["Simulator", "SimThread", "ExchangeServer", "Connection", "Stream", "StreamKey",
           "PrivateSession"]
