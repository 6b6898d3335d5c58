"""Routing: route keys from request bodies, and each strategy's choices on fake backends."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from seekserve.gateway.backends import Backend, BackendPool
from seekserve.gateway.config import GatewayConfig, RoutingKind
from seekserve.gateway.routing import RouteKey, Router, route_key

PREFIX, SESSION = RoutingKind.PREFIX, RoutingKind.SESSION


def make_config(weights: tuple[float, ...] = (1, 1, 1, 1), **fields: Any) -> GatewayConfig:
    backends = [
        {"name": f"b{i}", "url": f"http://127.0.0.1:{9000 + i}/v1", "models": ["m"], "weight": w}
        for i, w in enumerate(weights)
    ]
    return GatewayConfig.model_validate({"backends": backends, **fields})


def make_backends(config: GatewayConfig, in_flight: tuple[int, ...] = ()) -> list[Backend]:
    backends = list(BackendPool.build(config.backends, config.breaker))
    for backend, count in zip(backends, in_flight, strict=False):
        backend.in_flight = count
    return backends


def make_router(config: GatewayConfig, seed: int = 0) -> Router:
    return Router(config, random.Random(seed))


def chat_key(system: str, user: str, model: str = "m", prefix_chars: int = 512) -> RouteKey:
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    return route_key(body, model, prefix_chars)


def pick(router: Router, backends: list[Backend], key: RouteKey, kind: RoutingKind) -> Backend:
    chosen = router.choose(backends, key, kind)
    assert chosen is not None, "choose gave None for a non-empty candidate list"
    return chosen


def counts(
    router: Router, backends: list[Backend], kind: RoutingKind, n: int, key: RouteKey | None = None
) -> Counter[str]:
    key = key or RouteKey("m", "", None)
    return Counter(pick(router, backends, key, kind).name for _ in range(n))


def chi_square(observed: Counter[str], expected: dict[str, float]) -> float:
    return sum((observed[name] - e) ** 2 / e for name, e in expected.items())


CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27}
"""Chi-square critical values at p = 0.001 by degrees of freedom: a fair sampler fails 1 seed in 1000."""

LONG_SYSTEM = "You are a careful assistant. " * 11  # 319 characters: past the 256 block, inside 512


def test_route_key_completions() -> None:
    assert route_key({"prompt": "abcdef", "user": "u1"}, "m", 4) == RouteKey("m", "abcd", "u1")
    assert route_key({"prompt": ["first", "second"]}, "m", 16) == RouteKey("m", "first", None)
    assert route_key({"prompt": [5, 6, 7, 8]}, "m", 3).prefix == "5,6,7"
    assert route_key({"prompt": [[1, 2], [3]]}, "m", 16).prefix == "1,2"
    assert route_key({"prompt": []}, "m", 16).prefix == ""
    assert route_key({"prompt": 12}, "m", 16).prefix == ""
    assert route_key({}, "m", 16) == RouteKey("m", "", None)
    assert route_key({"prompt": "x", "user": 7}, "m", 16).user is None


def test_route_key_chat() -> None:
    assert chat_key("S", "hello").prefix == "system:S\nuser:hello\n"
    parts = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}],
            },
            {"role": "assistant", "content": None},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}]},
        ]
    }
    assert route_key(parts, "m", 512).prefix == "user:a\nassistant:\nuser:bc\n"
    assert chat_key("S" * 100, "hello", prefix_chars=20).prefix == "system:" + "S" * 13
    assert chat_key("S", "hello", prefix_chars=12).prefix == "system:S\nuse"
    assert route_key({"messages": ["junk", {"role": "user", "content": "u"}]}, "m", 64).prefix == "user:u\n"


class _Unread(dict[str, Any]):
    def get(self, *args: Any) -> Any:
        raise AssertionError("a message past prefix_chars was read")


def test_route_key_chat_stops_reading_at_the_limit() -> None:
    body = {"messages": [{"role": "system", "content": "S" * 2048}, _Unread()]}
    assert route_key(body, "m", 512).prefix == "system:" + "S" * 505


def test_least_loaded_picks_the_less_loaded_of_two() -> None:
    config = make_config((1, 1))
    router = make_router(config)
    a, b = make_backends(config, (3, 1))
    assert counts(router, [a, b], RoutingKind.LEAST_LOADED, 1000) == {"b1": 1000}
    assert counts(router, [b, a], RoutingKind.LEAST_LOADED, 1000) == {"b1": 1000}
    a.in_flight, a.waiting = 0, 5.0  # the scraped queue counts as load
    assert counts(router, [a, b], RoutingKind.LEAST_LOADED, 100) == {"b1": 100}
    a.in_flight, a.waiting, b.in_flight, b.waiting = 1, 1.0, 2, 0.0  # equal load: fewer own in flight
    assert counts(router, [a, b], RoutingKind.LEAST_LOADED, 100) == {"b0": 100}
    b.in_flight, b.waiting = 1, 1.0  # a full tie: a coin flip
    tie = counts(router, [a, b], RoutingKind.LEAST_LOADED, 1000)
    assert 430 <= tie["b0"] <= 570 and tie["b0"] + tie["b1"] == 1000
    assert router.choose([a], RouteKey("m", "", None), RoutingKind.LEAST_LOADED) is a
    for kind in RoutingKind:
        assert router.choose([], RouteKey("m", "", None), kind) is None


def test_least_loaded_power_of_two_over_four() -> None:
    config = make_config()
    chosen = counts(
        make_router(config), make_backends(config, (0, 0, 0, 10)), RoutingKind.LEAST_LOADED, 10_000
    )
    assert chosen["b3"] == 0  # two distinct samples: the loaded one always loses
    assert chi_square(chosen, {name: 10_000 / 3 for name in ("b0", "b1", "b2")}) < CHI2_999[2], chosen


def test_weighted_follows_the_weights() -> None:
    config = make_config((1, 2, 3, 4))
    router = make_router(config)
    backends = make_backends(config)
    n = 10_000
    chosen = counts(router, backends, RoutingKind.WEIGHTED, n)
    assert chi_square(chosen, {b.name: n * b.config.weight / 10 for b in backends}) < CHI2_999[3], chosen
    pair = counts(router, [backends[0], backends[3]], RoutingKind.WEIGHTED, n)  # weights 1:4 among these two
    assert sorted(pair) == ["b0", "b3"] and chi_square(pair, {"b0": n / 5, "b3": n * 4 / 5}) < CHI2_999[1], (
        pair
    )


def test_prefix_same_system_prompt_sticks_across_user_turns() -> None:
    config = make_config()
    router = make_router(config)
    backends = make_backends(config)
    first = pick(router, backends, chat_key(LONG_SYSTEM, "What is 2+2?"), PREFIX)
    router.record(chat_key(LONG_SYSTEM, "What is 2+2?"), first, PREFIX)
    for turn in range(20):
        first.in_flight = turn % 9  # busier, but never more than prefix_imbalance (8) above the rest
        key = chat_key(LONG_SYSTEM, f"question number {turn}")
        assert router.choose(backends, key, PREFIX) is first
        router.record(key, first, PREFIX)


def test_prefix_different_system_prompts_spread_and_stick() -> None:
    config = make_config()
    router = make_router(config)
    backends = make_backends(config)
    placed: dict[str, str] = {}
    for i in range(40):  # each request stays in flight, as while the proxy streams it
        key = chat_key(f"{i:03d} " + LONG_SYSTEM, "hi")
        backend = pick(router, backends, key, PREFIX)
        router.record(key, backend, PREFIX)
        backend.in_flight += 1
        placed[key.prefix] = backend.name
    spread = Counter(placed.values())
    assert sorted(spread) == ["b0", "b1", "b2", "b3"] and max(spread.values()) - min(spread.values()) <= 3, (
        spread
    )
    for prefix, name in placed.items():
        assert pick(router, backends, RouteKey("m", prefix, None), PREFIX).name == name


def test_prefix_longest_shared_length_wins() -> None:
    config = make_config()
    router = make_router(config)
    b0, b1, b2, b3 = make_backends(config)
    x = "x" * 300
    y = "x" * 130 + "y" * 170  # shares 128 characters with x, so overwrites x's 64 and 128 entries
    router.record(RouteKey("m", x, None), b2, PREFIX)
    router.record(RouteKey("m", y, None), b3, PREFIX)
    assert router.choose([b0, b1, b2, b3], RouteKey("m", x, None), PREFIX) is b2  # whole prompt
    assert router.choose([b0, b1, b2, b3], RouteKey("m", x[:260] + "z" * 40, None), PREFIX) is b2  # 256 block
    assert router.choose([b0, b1, b2, b3], RouteKey("m", x[:129] + "z" * 40, None), PREFIX) is b3  # 128 block
    assert router.choose([b0, b1, b3], RouteKey("m", x, None), PREFIX) is b3  # b2 gone: the next block down
    b1.in_flight = 1
    assert router.choose([b0, b1], RouteKey("m", "z" * 300, None), PREFIX) is b0  # unknown: least loaded
    assert router.choose([b1, b2], RouteKey("m", "", None), PREFIX) is b2  # no prompt: least loaded
    b2.in_flight = 1
    assert router.choose([b0, b2], RouteKey("m", x, None), PREFIX) is b2
    assert router.choose([b0, b2], RouteKey("other", x, None), PREFIX) is b0  # the model is part of the key


def test_prefix_spills_past_the_imbalance_then_repoints() -> None:
    config = make_config((1, 1), prefix_imbalance=8)
    router = make_router(config)
    a, b = make_backends(config)
    key = chat_key(LONG_SYSTEM, "hi")
    router.record(key, a, PREFIX)
    a.in_flight = 8
    assert router.choose([a, b], key, PREFIX) is a  # 8 above the least loaded is still allowed
    a.in_flight = 9
    spilled = pick(router, [a, b], key, PREFIX)
    assert spilled is b
    router.record(key, spilled, PREFIX)
    a.in_flight = 0
    b.in_flight = 3
    assert router.choose([a, b], key, PREFIX) is b  # the entry now points at b


def test_prefix_map_is_bounded() -> None:
    config = make_config((1, 1), prefix_max_entries=50)
    router = make_router(config)
    a, b = make_backends(config)
    first = RouteKey("m", "first prompt", None)
    router.record(first, b, PREFIX)
    for i in range(500):
        router.record(RouteKey("m", f"short prompt {i}", None), a, PREFIX)
        assert router.num_entries(PREFIX) <= 50
    for i in range(500):
        router.record(RouteKey("m", f"{i} " + LONG_SYSTEM, None), a, PREFIX)  # 4 entries each
        assert router.num_entries(PREFIX) <= 50
    assert router.num_entries(PREFIX) == 50
    b.in_flight = 1
    assert router.choose([a, b], first, PREFIX) is a  # evicted: least loaded decides
    last = RouteKey("m", "499 " + LONG_SYSTEM, None)
    a.in_flight, b.in_flight = 1, 0
    assert router.choose([a, b], last, PREFIX) is a  # the newest entries survive


def test_session_sticks_by_user() -> None:
    config = make_config((1, 1), prefix_max_entries=10)
    router = make_router(config)
    a, b = make_backends(config)
    alice, bob = RouteKey("m", "p", "alice"), RouteKey("m", "q", "bob")
    router.record(alice, a, SESSION)
    router.record(bob, b, SESSION)
    a.in_flight = 5
    assert router.choose([a, b], alice, SESSION) is a
    assert router.choose([a, b], bob, SESSION) is b
    assert router.choose([a, b], RouteKey("m", "p", None), SESSION) is b  # no user: least loaded
    assert (
        router.choose([a, b], RouteKey("m2", "p", "alice"), SESSION) is b
    )  # another model: not this session
    assert router.choose([a, b], alice, PREFIX) is b  # the prefix map learnt nothing from session records
    a.in_flight = 9
    assert router.choose([a, b], alice, SESSION) is b
    for i in range(100):
        router.record(RouteKey("m", "", f"user{i}"), a, SESSION)
    assert router.num_entries(SESSION) == 10 and router.num_entries(PREFIX) == 0


def test_forget_drops_a_backends_entries() -> None:
    config = make_config()
    router = make_router(config)
    b0, _, b2, b3 = make_backends(config, (0, 1, 1, 1))
    router.record(RouteKey("m", LONG_SYSTEM, "u"), b2, PREFIX)
    router.record(RouteKey("m", LONG_SYSTEM, "u"), b2, SESSION)
    router.record(RouteKey("m", "other", "v"), b3, SESSION)
    assert router.num_entries(PREFIX) == 4 and router.num_entries(SESSION) == 2
    router.forget("b2")
    assert router.num_entries(PREFIX) == 0 and router.num_entries(SESSION) == 1
    assert router.choose([b0, b2], RouteKey("m", LONG_SYSTEM, "u"), PREFIX) is b0


@pytest.mark.parametrize("kind", list(RoutingKind))
def test_every_kind_chooses_among_the_candidates(kind: RoutingKind) -> None:
    config = make_config()
    router = make_router(config)
    backends = make_backends(config, (2, 0, 1, 3))
    key = chat_key(LONG_SYSTEM, "hi")
    for _ in range(50):
        chosen = pick(router, backends[1:3], key, kind)
        assert chosen in backends[1:3]
        router.record(key, chosen, kind)


def test_round_robin_takes_each_candidate_in_turn() -> None:
    config = make_config((1, 1, 1))
    backends = make_backends(config)
    router = make_router(config)
    key = chat_key("s", "u")
    names = [pick(router, backends, key, RoutingKind.ROUND_ROBIN).name for _ in range(6)]
    assert names[:3] == names[3:] and sorted(names[:3]) == sorted(b.name for b in backends)
    # a backend that cannot take requests is skipped, the others keep alternating
    two = [pick(router, backends[:2], key, RoutingKind.ROUND_ROBIN).name for _ in range(4)]
    assert two[0] != two[1] and two[:2] == two[2:]
