"""Which backend serves a request: least-loaded, prefix, session or weighted routing.

The proxy builds one `RouteKey` per request (`route_key`), asks `Router.choose` to pick among
`BackendPool.candidates` and calls `Router.record` once the chosen backend has answered, so the
prefix and session maps learn which backend holds which prompt in its cache. Each `RoutingKind`
has one strategy class in `STRATEGIES`; the router keeps one instance of each.

Prefix routing remembers the prompt at block-aligned lengths as well as whole, so two chats that
share a system prompt but differ in their user turns meet at the longest length they share:

    "system:You are ...(300 chars)...\\nuser:What is 2+2?\\n"    remembered at 64, 128, 256 and whole
    "system:You are ...(300 chars)...\\nuser:Name a prime.\\n"   looked up whole, 256 (hit), 128, 64

Affinity never overrides load: a remembered backend more than `prefix_imbalance` requests busier
than the least loaded candidate is passed over (the request spills to least-loaded and `record`
re-points the entry). The maps are LRUs of `prefix_max_entries` hashes each, so memory is bounded
whatever the traffic. Everything runs on the gateway's event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import operator
import random
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seekserve.gateway.backends import Backend
from seekserve.gateway.config import GatewayConfig, RoutingKind

__all__ = [
    "STRATEGIES",
    "LeastLoadedRouting",
    "PrefixRouting",
    "RouteKey",
    "Router",
    "RoutingStrategy",
    "SessionRouting",
    "WeightedRouting",
    "route_key",
]

_LOAD = operator.attrgetter("load")

MIN_PREFIX_BLOCK = 64
"""Shortest prompt length remembered by prefix routing; longer ones double from here."""


@dataclass(frozen=True, slots=True)
class RouteKey:
    """What routing needs to know of a request, built once by `route_key`."""

    model: str
    prefix: str
    """The prompt's leading characters (see `route_key`); "" when it has none."""
    user: str | None
    """The request's `user` field."""


def route_key(body: dict[str, Any], model: str, prefix_chars: int) -> RouteKey:
    """The routing key of an OpenAI request body.

    Completions: `prompt` as a str, the first of a list of str, or the first `prefix_chars` token ids
    joined by ',' (a list of ints, or the first of a list of such lists). Chat: each message as
    "role:content\\n" in order, content a str or a list of {"type": "text", "text": ...} parts (other
    parts skipped). Both are cut to `prefix_chars`; chat stops reading messages once it has enough.
    Malformed fields give an empty prefix rather than an error: validating the body is not routing's job.
    """
    user = body.get("user")
    return RouteKey(model, _prefix(body, prefix_chars), user if isinstance(user, str) else None)


def _prefix(body: dict[str, Any], limit: int) -> str:
    if limit <= 0:
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        return _chat_prefix(messages, limit)
    return _prompt_prefix(body.get("prompt"), limit)


def _prompt_prefix(prompt: Any, limit: int) -> str:
    if isinstance(prompt, list):
        if not prompt:
            return ""
        if not isinstance(prompt[0], int):  # a batch: route on its first prompt
            prompt = prompt[0]
        if isinstance(prompt, list):  # token ids
            return ",".join(map(str, prompt[:limit]))
    return prompt[:limit] if isinstance(prompt, str) else ""


def _chat_prefix(messages: list[Any], limit: int) -> str:
    pieces: list[str] = []
    size = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        head = f"{message.get('role')}:"
        pieces.append(head)
        size += len(head)
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content[: max(0, limit - size)])
            size += len(pieces[-1])
        elif isinstance(content, list):
            for part in content:
                if size >= limit:
                    break
                text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
                if isinstance(text, str):
                    pieces.append(text[: limit - size])
                    size += len(pieces[-1])
        pieces.append("\n")
        size += 1
        if size >= limit:
            break
    return "".join(pieces)[:limit]


class RoutingStrategy(ABC):
    """One way of choosing a backend. Owned by the event loop; not thread-safe.

    `choose` gets a non-empty list of backends that may all take the request and returns one of them,
    reading their load but changing nothing on them. `record` learns that the chosen backend answered;
    `forget` drops what was learnt about a backend that is gone; `len` counts the entries remembered.
    """

    def __init__(self, config: GatewayConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng

    @abstractmethod
    def choose(self, candidates: Sequence[Backend], key: RouteKey) -> Backend: ...

    def record(self, key: RouteKey, backend: Backend) -> None:
        return None  # stateless strategies learn nothing

    def forget(self, backend_name: str) -> None:
        return None

    def __len__(self) -> int:
        return 0


class LeastLoadedRouting(RoutingStrategy):
    """Power of two random choices on `Backend.load`: the less loaded of two distinct random candidates.

    Sampling two instead of scanning all keeps gateways that share backends (and see the same stale
    scraped queues) from all piling onto the one that looked idlest. Ties go to fewer own in-flight
    requests, then to a coin flip."""

    def choose(self, candidates: Sequence[Backend], key: RouteKey | None = None) -> Backend:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        if n == 2:
            return self._less_loaded(candidates[0], candidates[1])
        random_ = self.rng.random
        i = int(random_() * n)  # random() < 1, so i < n and j < n - 1 (exact for any realistic n)
        j = int(random_() * (n - 1))
        return self._less_loaded(candidates[i], candidates[j + 1 if j >= i else j])

    def _less_loaded(self, a: Backend, b: Backend) -> Backend:
        load_a, load_b = a.load, b.load
        if load_a != load_b:
            return a if load_a < load_b else b
        if a.in_flight != b.in_flight:
            return a if a.in_flight < b.in_flight else b
        return a if self.rng.random() < 0.5 else b


class WeightedRouting(RoutingStrategy):
    """Random in proportion to `backend.config.weight` among the candidates."""

    def choose(self, candidates: Sequence[Backend], key: RouteKey | None = None) -> Backend:
        if len(candidates) == 1:
            return candidates[0]
        total = 0.0
        for backend in candidates:
            total += backend.config.weight
        point = self.rng.random() * total
        for backend in candidates:
            point -= backend.config.weight
            if point < 0:
                return backend
        return candidates[-1]  # rounding left `point` at 0 past the last weight


class RoundRobinRouting(RoutingStrategy):
    """Each backend in turn, in configured order, skipping those that cannot take the request now."""

    def __init__(self, config: GatewayConfig, rng: random.Random) -> None:
        super().__init__(config, rng)
        self._turn = 0

    def choose(self, candidates: Sequence[Backend], key: RouteKey | None = None) -> Backend:
        self._turn += 1
        return candidates[self._turn % len(candidates)]


class _AffinityRouting(RoutingStrategy):
    """Sticks each key to the backend that last served it (an LRU of key hash → backend name),
    unless that backend is gone from the candidates or is overloaded; then least-loaded decides."""

    def __init__(self, config: GatewayConfig, rng: random.Random) -> None:
        super().__init__(config, rng)
        self._least = LeastLoadedRouting(config, rng)
        self._entries: OrderedDict[int, str] = OrderedDict()
        self._max_entries = config.prefix_max_entries
        self._imbalance = config.prefix_imbalance

    @abstractmethod
    def _hashes(self, key: RouteKey) -> list[int]:
        """The key's map entries, most specific first; empty when the request has nothing to stick on."""

    def choose(self, candidates: Sequence[Backend], key: RouteKey) -> Backend:
        if len(candidates) > 1:
            floor: float | None = None
            for entry in self._hashes(key):
                name = self._entries.get(entry)
                if name is None:
                    continue
                for backend in candidates:
                    if backend.config.name == name:
                        if floor is None:
                            floor = min(map(_LOAD, candidates))
                        if backend.load <= floor + self._imbalance:
                            return backend
                        break
        return self._least.choose(candidates)

    def record(self, key: RouteKey, backend: Backend) -> None:
        entries, name = self._entries, backend.config.name
        for entry in self._hashes(key):
            entries[entry] = name
            entries.move_to_end(entry)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)

    def forget(self, backend_name: str) -> None:
        for entry in [e for e, name in self._entries.items() if name == backend_name]:
            del self._entries[entry]

    def __len__(self) -> int:
        return len(self._entries)


class PrefixRouting(_AffinityRouting):
    """Sends a prompt where its longest remembered leading text was last served (see the module docstring)."""

    def _hashes(self, key: RouteKey) -> list[int]:
        prefix, model = key.prefix, key.model
        length = len(prefix)
        if not length:
            return []
        hashes = [hash((model, prefix))]
        if length > MIN_PREFIX_BLOCK:
            block = MIN_PREFIX_BLOCK
            while block * 2 < length:
                block *= 2
            while block >= MIN_PREFIX_BLOCK:  # the longest block shorter than the prefix, then halves
                hashes.append(hash((model, prefix[:block])))
                block //= 2
        return hashes


class SessionRouting(_AffinityRouting):
    """Sends a `user`'s requests to the backend that last served that user; no user: least-loaded."""

    def _hashes(self, key: RouteKey) -> list[int]:
        return [] if key.user is None else [hash((key.model, key.user))]


STRATEGIES: dict[RoutingKind, type[RoutingStrategy]] = {
    RoutingKind.LEAST_LOADED: LeastLoadedRouting,
    RoutingKind.PREFIX: PrefixRouting,
    RoutingKind.SESSION: SessionRouting,
    RoutingKind.WEIGHTED: WeightedRouting,
    RoutingKind.ROUND_ROBIN: RoundRobinRouting,
}


class Router:
    """Chooses one backend among candidates for a request. Owned by the event loop; not thread-safe.

    Holds one strategy per `RoutingKind`, so models with different routing share nothing but the rng."""

    def __init__(self, config: GatewayConfig, rng: random.Random | None = None) -> None:
        rng = rng if rng is not None else random.Random()
        self._strategies = {kind: cls(config, rng) for kind, cls in STRATEGIES.items()}

    def choose(self, candidates: Sequence[Backend], key: RouteKey, kind: RoutingKind) -> Backend | None:
        """One of `candidates` (already filtered: healthy, not saturated, breaker allows); None only when
        there are none. Changes nothing on the backends."""
        if not candidates:
            return None
        return self._strategies[kind].choose(candidates, key)

    def record(self, key: RouteKey, backend: Backend, kind: RoutingKind) -> None:
        """`backend` answered the request of `key` (first byte received): prefix and session maps learn it."""
        self._strategies[kind].record(key, backend)

    def forget(self, backend_name: str) -> None:
        """Drop every map entry that points at `backend_name` (a backend removed on reload)."""
        for strategy in self._strategies.values():
            strategy.forget(backend_name)

    def num_entries(self, kind: RoutingKind) -> int:
        """Entries the strategy of `kind` remembers (never more than `prefix_max_entries`)."""
        return len(self._strategies[kind])
