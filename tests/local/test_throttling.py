"""The local gateway's stage throttling (tlops.local.throttling): token buckets per route."""

from __future__ import annotations

import threading

from tlops.local.throttling import Limit, Throttling


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_route_passes_its_burst_then_refills_at_its_rate():
    clock = Clock()
    throttling = Throttling(routes={"GET /ping": Limit(burst=3, rate=2.0)}, clock=clock)
    assert [throttling.allow("GET /ping") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.49
    assert throttling.allow("GET /ping") is False
    clock.now += 0.01  # half a second at 2/s: one request's worth
    assert throttling.allow("GET /ping") is True
    assert throttling.allow("GET /ping") is False
    clock.now += 60  # a long pause refills up to the burst, not beyond
    assert sum(throttling.allow("GET /ping") for _ in range(10)) == 3


def test_each_route_has_its_own_bucket_and_the_default_applies_to_the_rest():
    clock = Clock()
    throttling = Throttling(
        Limit(burst=5, rate=1.0), {"GET /ping": Limit(burst=1, rate=1.0)}, clock=clock
    )
    assert [throttling.allow("GET /ping") for _ in range(2)] == [True, False]
    assert sum(throttling.allow("POST /infer") for _ in range(10)) == 5
    assert sum(throttling.allow("GET /jobs/{id}") for _ in range(10)) == 5


def test_a_route_setting_overrides_the_default_field_by_field():
    throttling = Throttling(Limit(burst=20, rate=10.0), {"GET /health": Limit(burst=2)})
    assert throttling.limit("GET /health") == Limit(burst=2, rate=10.0)
    assert throttling.limit("GET /other") == Limit(burst=20, rate=10.0)


def test_without_a_burst_and_a_rate_a_route_is_not_throttled():
    throttling = Throttling(routes={"GET /ping": Limit(rate=1.0)})
    assert all(throttling.allow("GET /ping") for _ in range(100))
    assert all(Throttling().allow("POST /infer") for _ in range(100))


def test_a_burst_of_zero_refuses_everything():
    throttling = Throttling(routes={"GET /ping": Limit(burst=0, rate=0.0)})
    assert not any(throttling.allow("GET /ping") for _ in range(3))


def test_from_stage_reads_what_get_stages_returns():
    stage = {
        "StageName": "$default",
        "DefaultRouteSettings": {"ThrottlingBurstLimit": 20, "ThrottlingRateLimit": 10.0},
        "RouteSettings": {"GET /ping": {"ThrottlingBurstLimit": 5, "ThrottlingRateLimit": 2}},
    }
    throttling = Throttling.from_stage(stage)
    assert throttling.limit("GET /ping") == Limit(burst=5, rate=2.0)
    assert throttling.limit("POST /infer") == Limit(burst=20, rate=10.0)
    assert Throttling.from_stage(None).limit("GET /ping") == Limit()
    assert Throttling.from_stage({"DefaultRouteSettings": {}}).limit("x") == Limit()


def test_concurrent_requests_never_pass_more_than_the_burst():
    throttling = Throttling(routes={"GET /ping": Limit(burst=10, rate=0.0)})
    passed = []
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        passed.extend(throttling.allow("GET /ping") for _ in range(50))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(passed) == 10
