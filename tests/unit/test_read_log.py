"""The read log's budget and windows (server/read_log.py), on a clock the test moves."""

from __future__ import annotations

from server.read_log import ReadTally

V1 = ("v0001", "demo", "m1")
V2 = ("v0002", "demo", "m2")
ROUTE = "/api/v1/items/{item_id}/timeseries"


def test_each_second_logs_at_most_the_budget_in_full() -> None:
    tally = ReadTally(per_second=2)
    assert [tally.in_full(100.1), tally.in_full(100.5), tally.in_full(100.9)] == [True, True, False]
    assert tally.in_full(101.0), "a new second has a new budget"


def test_a_budget_of_zero_logs_no_read_in_full() -> None:
    assert not ReadTally(per_second=0).in_full(5.0)


def test_a_window_counts_every_read_by_route_and_status() -> None:
    tally = ReadTally(per_second=1, window_seconds=10)
    for moment, status in ((0.0, 200), (1.0, 200), (2.0, 304)):
        assert tally.count(moment, "GET", ROUTE, status, 0.002, V1) is None
        tally.in_full(moment)
    ended = tally.count(10.5, "HEAD", ROUTE, 200, 0.004, V1)
    assert ended == {
        "window_s": 10.5,
        "reads": 3,
        "logged": 3,
        "routes": {f"GET {ROUTE} 200": 2, f"GET {ROUTE} 304": 1},
        "max_ms": 2.0,
        "data_version": "v0001",
        "dataset_id": "demo",
        "model_version": "m1",
    }
    last = tally.close(11.0)
    assert last is not None
    assert last["reads"] == 1
    assert last["routes"] == {f"HEAD {ROUTE} 200": 1}
    assert tally.close(12.0) is None, "an empty window writes no line"


def test_a_new_data_version_ends_the_window() -> None:
    tally = ReadTally(per_second=0)
    tally.count(0.0, "GET", ROUTE, 200, 0.001, V1)
    ended = tally.count(0.5, "GET", ROUTE, 200, 0.001, V2)
    assert ended is not None
    assert (ended["reads"], ended["data_version"], ended["logged"]) == (1, "v0001", 0)
    last = tally.close(1.0)
    assert last is not None
    assert (last["data_version"], last["model_version"]) == ("v0002", "m2")


def test_reads_of_no_version_do_not_end_a_window() -> None:
    tally = ReadTally(per_second=0)
    none = (None, None, None)
    for step in range(1000):  # health probes between data reads: one window, not a thousand
        version = V1 if step % 2 else none
        assert tally.count(step / 1000, "GET", ROUTE, 200, 0.001, version) is None
    last = tally.close(1.0)
    assert last is not None
    assert (last["reads"], last["data_version"]) == (1000, "v0001")
