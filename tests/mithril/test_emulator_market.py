"""The emulator's auction as a pure state machine: explicit clocks, no threads, no network."""

from __future__ import annotations

import pytest

from sflow.mithril.emulator.catalog import default_catalog
from sflow.mithril.emulator.ids import Ids
from sflow.mithril.emulator.market import (
    ALLOCATED, OPEN, PAUSED, PREEMPTING, TERMINATED, HOUR, Market, MarketConfig, MarketError,
    S_NEW, S_PAUSED, S_PREEMPTING, S_RUNNING, S_STARTING, S_TERMINATED,
)

REGION, TYPE = "us-central1-a", "8xh100"  # reserve price 800 cents per instance-hour
RESERVE = 800


def make_market(capacity: int = 4, *, notice: float = 10.0, startup: float = 3.0, seed: int = 1) -> Market:
    # auctions at t = 2, 4, 6, ...
    m = Market(default_catalog(), MarketConfig(tick_seconds=2.0, notice_seconds=notice, startup_seconds=startup),
               start=0.0, ids=Ids(seed))
    m.script_supply(REGION, TYPE, [(0, capacity)])
    return m


def place(m: Market, now: float, limit: int, quantity: int, name: str = "job"):
    return m.place_bid(now, project="proj_x", region=REGION, instance_type=TYPE, limit_cents=limit,
                       quantity=quantity, name=name, launch_specification={"ssh_keys": [], "volumes": []},
                       created_by="user_x")


def pool(m: Market):
    return m.pool(REGION, TYPE)


def statuses(m: Market, bid) -> list[str]:
    return [m.instances[f].status for f in bid.instances]


# ----- the auction ---------------------------------------------------------------------------------


def test_bids_wait_for_the_next_scheduled_auction():
    m = make_market()
    b = place(m, 0.5, 1000, 1)
    m.advance(1.9)
    assert b.status == OPEN and b.instances == []
    m.advance(2.0)
    assert b.status == ALLOCATED and len(b.instances) == 1


def test_second_price_every_winner_pays_the_highest_losing_limit():
    m = make_market(capacity=4)
    a = place(m, 0.1, 2000, 2, "a")
    b = place(m, 0.2, 1500, 2, "b")
    c = place(m, 0.3, 1200, 2, "c")
    d = place(m, 0.4, 1100, 1, "d")
    m.advance(2)
    assert (a.status, b.status, c.status, d.status) == (ALLOCATED, ALLOCATED, OPEN, OPEN)
    assert pool(m).clearing_cents == 1200  # c is the highest losing bid, not d
    assert a.price_cents == b.price_cents == 1200


def test_reserve_price_when_nobody_loses():
    m = make_market(capacity=4)
    a = place(m, 0.1, 5000, 3)
    m.advance(2)
    assert a.status == ALLOCATED
    assert pool(m).clearing_cents == RESERVE and a.price_cents == RESERVE


def test_a_bid_below_the_reserve_never_wins():
    m = make_market(capacity=4)
    low = place(m, 0.1, RESERVE - 1, 1)
    m.advance(10)
    assert low.status == OPEN and low.instances == []


def test_equal_limits_are_served_in_submission_order():
    m = make_market(capacity=2)
    first = place(m, 0.5, 1000, 2, "first")
    second = place(m, 0.5, 1000, 2, "second")  # same instant: the order of arrival decides
    m.advance(2)
    assert first.status == ALLOCATED and second.status == OPEN
    # a later bid at the same limit does not displace the one already served
    third = place(m, 2.5, 1000, 2, "third")
    m.advance(6)
    assert first.status == ALLOCATED and third.status == OPEN


def test_an_earlier_submission_wins_a_tie_even_when_placed_in_the_other_order():
    m = make_market(capacity=1)
    late = place(m, 1.5, 1000, 1, "late")
    early = place(m, 0.5, 1000, 1, "early")  # arrives second but says it was submitted first
    m.advance(2)
    assert early.status == ALLOCATED and late.status == OPEN


def test_gang_allocation_is_all_or_nothing_and_nobody_pays_above_their_limit():
    m = make_market(capacity=3)
    big = place(m, 0.1, 2000, 4, "big")  # wants more than there is: gets nothing
    small = place(m, 0.2, 1000, 2, "small")
    m.advance(2)
    assert big.status == OPEN and big.instances == []
    assert small.status == ALLOCATED and len(small.instances) == 2
    # the clearing price is the losing 2000, but small never pays above its own 1000
    assert pool(m).clearing_cents == 2000
    assert small.price_cents == 1000
    assert sum(1 for i in m.instances.values() if i.bid == big.fid) == 0


def test_lowering_the_limit_below_the_price_reprices_at_once():
    m = make_market(capacity=2)
    a = place(m, 0.1, 3000, 1)
    place(m, 0.2, 2500, 2)  # loses, sets the price to 2500
    m.advance(10)
    assert a.price_cents == 2500
    m.update_bid(11, a.fid, limit_cents=2000)
    assert a.price_cents == 2000
    ivs = m.ledger[a.fid][a.instances[0]]
    assert [(iv.start, iv.end, iv.price_cents) for iv in ivs] == [(5.0, 11, 2500), (11, None, 2000)]


# ----- lifecycle and billing -----------------------------------------------------------------------


def test_instances_go_new_starting_running_and_start_up_is_not_billed():
    m = make_market(startup=3.0)
    b = place(m, 0.1, 1000, 2)
    m.advance(2.0)
    assert statuses(m, b) == [S_NEW, S_NEW]
    m.advance(3.5)
    assert statuses(m, b) == [S_STARTING, S_STARTING]
    assert [e.kind for e in m.drain_events()] == ["start", "start"]
    m.advance(4.99)
    assert m.cost_cents(b.fid, 4.99) == 0
    m.advance(5.0)
    assert statuses(m, b) == [S_RUNNING, S_RUNNING]
    # two instances, one hour each from t=5, at the reserve price
    assert m.cost_cents(b.fid, 5 + HOUR) == pytest.approx(2 * RESERVE)


def test_deleting_a_bid_terminates_it_at_once_and_stops_billing():
    m = make_market()
    b = place(m, 0.1, 1000, 2)
    m.advance(8)
    m.drain_events()
    m.cancel_bid(8, b.fid)
    assert b.status == TERMINATED and b.deactivated_at == 8
    assert statuses(m, b) == [S_TERMINATED, S_TERMINATED]
    assert sorted(e.kind for e in m.drain_events()) == ["stop", "stop"]
    cost = m.cost_cents(b.fid, 8)
    assert cost == pytest.approx(2 * (8 - 5) / HOUR * RESERVE)
    assert m.cost_cents(b.fid, 8 + HOUR) == cost
    m.cancel_bid(9, b.fid)  # twice is harmless
    assert b.deactivated_at == 8


def test_price_rise_preempts_with_notice_then_the_bid_is_reallocated():
    m = make_market(capacity=4, notice=10.0)
    mine = place(m, 0.1, 1000, 4)
    # other users outbid it at t=10 and leave at t=30
    m.script_demand(REGION, TYPE, [(10, 3000, 4), (30, 0, 0)])
    m.advance(9)
    assert mine.status == ALLOCATED and statuses(m, mine) == [S_RUNNING] * 4
    first = list(mine.instances)

    m.advance(10)
    assert mine.status == PREEMPTING and mine.notice_ends == 20
    assert statuses(m, mine) == [S_PREEMPTING] * 4

    m.advance(19.9)
    assert mine.status == PREEMPTING
    m.advance(20)
    assert mine.status == OPEN and mine.instances == []
    assert all(m.instances[f].status == S_TERMINATED for f in first)

    m.advance(29)
    assert mine.status == OPEN  # still outbid
    m.advance(30)
    assert mine.status == ALLOCATED and set(mine.instances).isdisjoint(first)
    m.advance(33)
    assert statuses(m, mine) == [S_RUNNING] * 4

    # the ledger: billed from 5 until the notice ran out at 20, at the price it had (the notice
    # freezes it); the new instances from 33, at the clearing price of the moment
    for f in first:
        assert [(iv.start, iv.end, iv.price_cents) for iv in m.ledger[mine.fid][f]] == [(5.0, 20, RESERVE)]
    for f in mine.instances:
        assert [(iv.start, iv.end, iv.price_cents) for iv in m.ledger[mine.fid][f]] == [(33.0, None, RESERVE)]
    expected = 4 * (15 * RESERVE + 7 * RESERVE) / HOUR
    assert m.cost_cents(mine.fid, 40) == pytest.approx(expected)


def test_losing_supply_preempts_the_lowest_bids_first():
    m = make_market(capacity=4)
    m.script_supply(REGION, TYPE, [(0, 4), (10, 2)])
    high = place(m, 0.1, 2000, 2, "high")
    low = place(m, 0.2, 1000, 2, "low")
    m.advance(8)
    assert high.status == low.status == ALLOCATED
    m.advance(10)
    assert high.status == ALLOCATED and low.status == PREEMPTING


def test_a_winner_waits_while_the_machines_it_displaced_serve_their_notice():
    m = make_market(capacity=2, notice=10.0)
    low = place(m, 0.1, 1000, 2, "low")
    m.advance(4)
    high = place(m, 4.5, 3000, 2, "high")
    m.advance(6)
    assert low.status == PREEMPTING and high.status == OPEN  # machines still busy
    m.advance(16)
    assert low.status == OPEN and high.status == ALLOCATED
    assert pool(m).clearing_cents == 1000 and high.price_cents == 1000


def test_pause_stops_billing_and_resume_returns_to_the_auction():
    m = make_market()
    b = place(m, 0.1, 1000, 1)
    m.advance(7)
    m.update_bid(7, b.fid, paused=True)
    assert b.status == PAUSED and statuses(m, b) == [S_PAUSED]
    assert m.cost_cents(b.fid, 100) == pytest.approx((7 - 5) / HOUR * RESERVE)
    m.advance(20)
    assert b.status == PAUSED
    m.update_bid(20, b.fid, paused=False)
    assert b.status == OPEN
    m.advance(22)
    assert b.status == ALLOCATED


def test_terminated_bids_cannot_be_changed_and_unknown_bids_are_404():
    m = make_market()
    b = place(m, 0.1, 1000, 1)
    m.cancel_bid(1, b.fid)
    with pytest.raises(MarketError) as e:
        m.update_bid(2, b.fid, limit_cents=5)
    assert e.value.status == 400
    with pytest.raises(MarketError) as e:
        m.get_bid("bid_nope")
    assert e.value.status == 404


def test_the_win_price_is_the_lowest_limit_that_would_win_now():
    m = make_market(capacity=4)
    assert m.win_price_cents(pool(m), 4, 0) == RESERVE
    place(m, 0.1, 1500, 3)
    m.advance(2)
    assert m.win_price_cents(pool(m), 1, 2) == RESERVE  # fits beside it
    assert m.win_price_cents(pool(m), 2, 2) == 1501  # must outbid it
    assert m.win_price_cents(pool(m), 5, 2) is None  # more than exists


def test_same_calls_same_clock_same_market():
    def run():
        m = make_market(capacity=3, seed=9)
        m.script_demand(REGION, TYPE, [(6, 1800, 2), (20, 0, 0)])
        bids = [place(m, 0.1 * n, 900 + 100 * n, 1 + n % 2, f"b{n}") for n in range(5)]
        for t in range(0, 40, 3):
            m.advance(t)
        m.cancel_bid(40, bids[-1].fid)
        return m.ledger_dump(50), [(b.fid, b.status, b.instances) for b in bids]

    assert run() == run()


# ----- reservations --------------------------------------------------------------------------------


def reserve(m: Market, now: float, start: float, hours: float, quantity: int = 1):
    return m.create_reservation(now, project="proj_x", region=REGION, instance_type=TYPE, start=start,
                                end=start + hours * HOUR, quantity=quantity, name="res",
                                launch_specification={"ssh_keys": [], "volumes": []}, created_by="user_x")


@pytest.mark.parametrize("hours", [2, 3.5, 14 * 24 + 1])
def test_reservation_windows_are_whole_hours_from_three_hours_to_two_weeks(hours):
    m = make_market()
    with pytest.raises(MarketError) as e:
        reserve(m, 0, 0, hours)
    assert e.value.status == 422


def test_reservation_is_pending_then_active_then_ended_at_a_fixed_price():
    m = make_market(capacity=4)
    r = reserve(m, 0, HOUR, 3, quantity=2)
    assert r.status == "Pending" and r.unit_cents == 2000 and r.total_cents == 2000 * 2 * 3
    m.advance(HOUR)
    assert r.status == "Active" and len(r.instances) == 2
    m.advance(HOUR + 3)
    assert [m.instances[f].status for f in r.instances] == [S_RUNNING] * 2
    m.advance(4 * HOUR)
    assert r.status == "Ended"
    assert [m.instances[f].status for f in r.instances] == [S_TERMINATED] * 2


def test_reservations_take_capacity_from_spot_and_from_each_other():
    m = make_market(capacity=4)
    spot = place(m, 0.1, 1000, 4)
    m.advance(4)
    assert spot.status == ALLOCATED
    reserve(m, 5, 5, 3, quantity=2)  # starts now: spot loses its machines
    m.advance(6)
    assert spot.status == PREEMPTING
    assert m.reservable(pool(m), 10, 10 + 3 * HOUR) == 2
    with pytest.raises(MarketError):
        reserve(m, 10, 10, 3, quantity=3)
    assert m.latest_end(pool(m), 10, 2) == 10 + 14 * 24 * HOUR  # the other two: as long as allowed
    assert m.latest_end(pool(m), 10, 3) is None
    assert m.latest_end(pool(m), 0, 3) is None  # only 5 s before the reservation begins
    later = 5 + 3 * HOUR
    segments = m.free_segments(pool(m), 0, later + HOUR)
    assert segments == [(0, 5, 4), (5, later, 2), (later, later + HOUR, 4)]


def test_cancelling_a_reservation_frees_its_machines():
    m = make_market(capacity=4)
    r = reserve(m, 0, 0, 3, quantity=4)
    assert r.status == "Active"
    m.cancel_reservation(10, r.fid)
    assert r.status == "Canceled" and r.deactivated_at == 10
    assert m.reservable(pool(m), 10, 10 + 3 * HOUR) == 4


def test_terminating_a_reservations_instances_gives_capacity_back_and_keeps_the_price():
    m = make_market(capacity=4)
    r = reserve(m, 0, 0, 3, quantity=2)
    paid = r.total_cents
    first, second = r.instances
    assert m.terminate_reservation_instances(5, r.fid, [first]) == [first]
    assert m.instances[first].status == "STATUS_TERMINATED" and r.instances == [second]
    assert r.status == "Active" and r.quantity == 1 and r.total_cents == paid
    assert m.reservable(pool(m), 5, 5 + 3 * HOUR) == 3
    with pytest.raises(MarketError) as err:
        m.terminate_reservation_instances(6, r.fid, [first])  # no longer its instance
    assert err.value.status == 404
    m.terminate_reservation_instances(7, r.fid, [second])
    assert r.status == "Ended" and r.deactivated_at == 7 and r.total_cents == paid
    with pytest.raises(MarketError) as err:
        m.terminate_reservation_instances(8, r.fid, [second])
    assert err.value.status == 400
