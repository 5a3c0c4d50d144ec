"""Reconnect delays (``Redial``) and the signs of life that cut reconnect waits short
(``Liveness``), on a manual clock."""

from __future__ import annotations

import asyncio

from btccxt_cli.clock import ManualClock
from btccxt_cli.sources.gate import RestGate
from btccxt_cli.sources.liveness import QUICK_S, STABLE_S, Liveness, Redial


def redial(clock: ManualClock) -> Redial:
    return Redial(5.0, 60.0, clock=clock, rng=lambda: 0.5)  # jitter factor 1.0


def test_a_working_connection_that_drops_is_redialled_at_once():
    clock = ManualClock()
    r = redial(clock)
    r.success()
    clock.advance(QUICK_S)
    assert r.failure() == 0.0


def test_the_backoff_grows_while_down_and_is_capped():
    clock = ManualClock()
    r = redial(clock)
    r.success()
    clock.advance(STABLE_S)
    delays = [r.failure() for _ in range(7)]  # the drop, then failed redials
    assert delays == [0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_the_growth_is_kept_across_short_lived_connections_and_reset_after_a_stable_period():
    clock = ManualClock()
    r = redial(clock)
    r.success()
    clock.advance(STABLE_S)
    assert [r.failure(), r.failure(), r.failure()] == [0.0, 5.0, 10.0]
    r.success()  # back, but only for a few seconds: redial at once, the growth stays
    clock.advance(5)
    assert r.failure() == 0.0
    assert r.failure() == 20.0
    r.success()  # back for a stable period: the next failed redial starts from the base
    clock.advance(STABLE_S)
    assert [r.failure(), r.failure()] == [0.0, 5.0]


def test_a_connection_dropped_at_once_is_not_redialled_in_a_tight_loop():
    clock = ManualClock()
    r = redial(clock)
    r.success()
    clock.advance(STABLE_S)
    assert r.failure() == 0.0
    r.success()
    clock.advance(QUICK_S / 10)  # accepted and dropped again at once
    assert r.failure() == 5.0


def test_a_sign_of_life_after_rest_failed_ends_every_reconnect_wait():
    async def main() -> None:
        backs: list[int] = []
        life = Liveness(None, gate=RestGate(), on_back=lambda: backs.append(1))
        waits = [asyncio.create_task(life.pause(60)) for _ in range(3)]
        await asyncio.sleep(0)  # let them start waiting
        life.rest_failed()
        assert life.dark
        life.alive()
        await asyncio.wait_for(asyncio.gather(*waits), 5)
        assert backs == [1] and not life.dark

    asyncio.run(main())


def test_signs_of_life_while_not_dark_do_not_wake_reconnect_waits():
    """REST answering while the WebSocket refuses must not redial at REST's pace."""

    async def main() -> None:
        life = Liveness(None, gate=RestGate())
        wait = asyncio.create_task(life.pause(60))
        await asyncio.sleep(0)
        life.alive()
        assert all(not ev.is_set() for ev in life._sleepers) and not wait.done()
        wait.cancel()

    asyncio.run(main())


def test_the_probe_runs_while_rest_fails_and_its_first_answer_wakes_the_waits():
    async def main() -> None:
        answers = iter([False, False, True])
        calls: list[int] = []

        async def probe() -> None:
            calls.append(1)
            if not next(answers):
                raise ConnectionError("refused")

        life = Liveness(probe, gate=RestGate(), interval=0.01)
        wait = asyncio.create_task(life.pause(60))
        await asyncio.sleep(0)
        life.suspect()  # a redial failed
        await asyncio.wait_for(wait, 5)
        assert len(calls) == 3 and not life.dark
        assert life._task is not None
        await asyncio.wait_for(life._task, 5)  # it stops after the answer

    asyncio.run(main())


def test_a_probe_that_answers_at_once_wakes_nothing():
    """A failed redial with REST fine: the WebSocket alone is refused, its backoff holds."""

    async def main() -> None:
        async def probe() -> None:
            return None

        life = Liveness(probe, gate=RestGate(), interval=0.01)
        wait = asyncio.create_task(life.pause(60))
        await asyncio.sleep(0)
        life.suspect()
        assert life._task is not None
        await asyncio.wait_for(life._task, 5)
        assert not wait.done() and life.probes == 1
        wait.cancel()

    asyncio.run(main())
