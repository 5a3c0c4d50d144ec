"""How the live broker reads an algo (stop) order of either exchange (``orderkit.algo_state``):
okx's ``state`` / ``ordId`` / ``failCode`` and binance USD-M's ``algoStatus`` /
``actualOrderId``, as ccxt hands them over in ``info``."""

from __future__ import annotations

import pytest

from btccxt_cli.bt.orderkit import algo_state


@pytest.mark.parametrize(("info", "want"), [
    ({"state": "live", "ordId": ""}, ("live", "", "")),
    ({"state": "effective", "ordId": "680800019749904385"}, ("effective", "680800019749904385", "")),
    ({"state": "canceled", "ordId": ""}, ("canceled", "", "")),
    ({"state": "order_failed", "ordId": "", "failCode": "51169"},
     ("order_failed", "", "okx code 51169")),
    ({"algoStatus": "NEW", "actualOrderId": ""}, ("live", "", "")),
    ({"algoStatus": "TRIGGERING", "actualOrderId": ""}, ("live", "", "")),
    ({"algoStatus": "TRIGGERED", "actualOrderId": "4000001"}, ("effective", "4000001", "")),
    ({"algoStatus": "TRIGGERED", "actualOrderId": ""}, ("live", "", "")),  # not placed yet
    ({"algoStatus": "FINISHED", "actualOrderId": 4000001}, ("effective", "4000001", "")),
    ({"algoStatus": "FINISHED", "actualOrderId": "0"},
     ("order_failed", "", "binance algoStatus FINISHED")),
    ({"algoStatus": "CANCELED", "actualOrderId": ""}, ("canceled", "", "")),
    ({"algoStatus": "EXPIRED", "actualOrderId": ""}, ("canceled", "", "")),
    ({"algoStatus": "REJECTED", "actualOrderId": ""},
     ("order_failed", "", "binance algoStatus REJECTED")),
])
def test_algo_states_of_okx_and_binance_read_alike(info: dict, want: tuple[str, str, str]) -> None:
    assert algo_state(info) == want
