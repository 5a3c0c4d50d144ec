"""``cache_source``: the one name a price source's bars are cached under, asked of the simulator
over its control API (real sockets; a plain HTTP server on loopback stands for a URL that is
not a simulator)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.cache.source import cache_source, sim_identity, split_source
from btccxt_cli.errors import ConfigError, TemporaryError

pytestmark = pytest.mark.live


@pytest.fixture
def not_a_sim() -> Iterator[str]:
    """A loopback HTTP server that answers 404 to everything."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_exchange_keeps_its_id_and_each_seed_gets_its_own_name(sim_factory):
    one = sim_factory(exchanges=("binance", "okx"), seed=1)
    seven = sim_factory(exchanges=("binance",), seed=7)
    assert cache_source("binance") == "binance"
    assert cache_source("binance", one.url("binance")) == "binance@sim:seed-1"
    assert cache_source("okx", one.url("okx") + "/") == "okx@sim:seed-1"
    assert cache_source("binance", seven.url("binance")) == "binance@sim:seed-7"
    assert sim_identity(seven.url("binance")) == {"simulator": "btccxt", "exchange": "binance",
                                                  "seed": 7, "identity": "seed-7"}
    assert split_source("binance") == ("binance", None)
    assert split_source("binance@sim:seed-7") == ("binance", "seed-7")
    assert split_source("binance@sim") == ("binance", "")  # an older btccxt's name: seed unknown
    # the identity is asked of the control API: never counted, never hit by REST faults
    seven.outage("binance", 30)
    assert cache_source("binance", seven.url("binance")) == "binance@sim:seed-7"
    assert seven.stats("binance")["rest"] == {}


def test_the_store_writes_simulated_bars_under_the_seed_it_talks_to(sim_factory, tmp_path):
    two = sim_factory(exchanges=("binance",), seed=2)
    with_cache = CCXTStore("binance", sim_url=two.url("binance"), cache=tmp_path / "c.sqlite")
    assert with_cache.cache_key == "binance@sim:seed-2"
    with_cache.cache.close()
    assert CCXTStore("binance", cache=None).cache_key == "binance"


def test_a_wrong_or_missing_simulator_is_one_clear_error(sim, not_a_sim):
    with pytest.raises(ConfigError, match=r"serves okx, not binance \(pass --exchange okx"):
        cache_source("binance", sim.url("okx"), option="--exchange")
    with pytest.raises(ConfigError, match=r"serves okx, not binance \(use the URL `btccxt sim "
                       r"-e binance` prints\)"):
        cache_source("binance", sim.url("okx"))
    with pytest.raises(ConfigError, match="is not a btccxt simulator, or an older one"):
        cache_source("binance", not_a_sim)
    with pytest.raises(TemporaryError, match="cannot reach the simulator at http://127.0.0.1:1"):
        cache_source("binance", "http://127.0.0.1:1", timeout=2)
