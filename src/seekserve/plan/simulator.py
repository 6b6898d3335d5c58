"""A discrete-event simulation of requests through a fleet of replicas, at one steady arrival rate.

    Poisson arrivals ──► router ──► replica i (num_slots requests in service at once)
                           │  least-loaded / prefix: no replica has a free slot
                           ▼
                        gateway queue (FIFO), served by the first slot that frees

Each replica serves up to `num_slots` requests at once (its batch). A request's service time is drawn
when it starts, from the `ServiceModel` at the replica's level then (requests in service, itself
included): continuous batching makes every request slower as the batch grows, and a profile measured at
each concurrency carries that. Later arrivals do not change a started request's time (an
approximation). Least-loaded and prefix routing send a request to a replica with a free slot or hold it
at the gateway, as `seekserve gateway`'s admission queue does, so with exponential service the fleet
is an M/M/(replicas × slots) queue; random routing queues at the chosen replica (N M/M/c queues).

Prefix groups model shared prompt prefixes (system prompts): a request whose group is in its replica's
cache (an LRU of `prefix_cache_groups`) takes `prefix_hit_cost` of its service time. Prefix routing
sends a group to the replica that served it last unless that one has `prefix_imbalance` more requests
in flight than the least loaded.

Events live in one heap (departures); arrivals are drawn one ahead. Random numbers come from numpy in
chunks (`_stream`), so a seed repeats a run exactly. The first `warmup_fraction` of the
requests (the fleet filling up from empty) are left out of the figures, and arrivals go on until every
measured request has finished, so the last ones do not see an emptying fleet.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from seekserve.errors import ConfigError

__all__ = [
    "ROUTINGS",
    "ExponentialService",
    "FleetConfig",
    "Routing",
    "ServiceModel",
    "WindowResult",
    "simulate",
]

Routing = Literal["least-loaded", "random", "prefix"]
ROUTINGS: tuple[str, ...] = ("least-loaded", "random", "prefix")
_CHUNK = 8192


class ServiceModel(Protocol):
    """Service times of one replica, made from standard draws the simulator takes in bulk (so a run
    repeats by its seed and Python draws no random numbers one at a time)."""

    noise: Literal["exponential", "normal"]
    """The draws `seconds` takes: standard exponential (mean 1) or standard normal."""

    def seconds(self, level: int, draw: float) -> float:
        """Seconds a request takes that starts with `level` requests in service, itself included."""
        ...


@dataclass(frozen=True)
class ExponentialService:
    """Exponential service times of one mean at every level (the M/M/c case)."""

    mean_s: float
    noise: Literal["exponential", "normal"] = "exponential"

    def seconds(self, level: int, draw: float) -> float:
        return self.mean_s * draw


@dataclass(frozen=True)
class FleetConfig:
    """A fleet of identical replicas behind one router."""

    num_replicas: int
    """Replicas behind the router, each serving the same profile."""
    num_slots: int
    """Requests one replica serves at once (its batch: vLLM's max_num_seqs)."""
    routing: Routing = "least-loaded"
    """least-loaded (fewest in flight, else held at the gateway), random (queue at the replica chosen)
    or prefix (the replica that served the request's prefix last, unless it is much busier)."""
    prefix_groups: int = 0
    """Distinct shared prompt prefixes, requests spread over them by Zipf(1) popularity; 0: none."""
    prefix_hit_cost: float = 0.6
    """Service time of a request whose prefix its replica has cached, as a share of a miss's."""
    prefix_cache_groups: int = 16
    """Prefixes one replica's cache keeps (least recently used goes first)."""
    prefix_imbalance: int = 8
    """Prefix routing passes over a replica with this many more requests in flight than the least loaded."""
    warmup_fraction: float = 0.1
    """Share of a window's first requests left out of its figures (the fleet settling)."""

    def __post_init__(self) -> None:
        if self.num_replicas < 1 or self.num_slots < 1:
            raise ConfigError(
                "a fleet needs at least one replica and one slot, got "
                f"{self.num_replicas} and {self.num_slots}"
            )
        if self.routing not in ROUTINGS:
            raise ConfigError(f"routing {self.routing!r} is not one of {', '.join(ROUTINGS)}")
        if self.routing == "prefix" and self.prefix_groups < 1:
            raise ConfigError("prefix routing needs prefix groups: give --prefix-groups N (N >= 1)")
        if not 0.0 < self.prefix_hit_cost <= 1.0:
            raise ConfigError(f"prefix_hit_cost must be in (0, 1], got {self.prefix_hit_cost}")
        if self.prefix_groups < 0 or self.prefix_cache_groups < 1 or self.prefix_imbalance < 0:
            raise ConfigError("prefix_groups and prefix_imbalance must be >= 0, prefix_cache_groups >= 1")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


@dataclass(frozen=True)
class WindowResult:
    """What the measured requests of one simulated window saw."""

    latencies_s: np.ndarray
    """Arrival to finish of every measured request, in arrival order."""
    waits_s: np.ndarray
    """Time each spent queued before its service started."""
    num_prefix_hits: int
    mean_in_service: float
    """Requests in service per replica, averaged over the window."""

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q))

    @property
    def mean_s(self) -> float:
        return float(self.latencies_s.mean())

    @property
    def mean_wait_s(self) -> float:
        return float(self.waits_s.mean())


def _stream(rng: np.random.Generator, kind: str) -> Iterator[float]:
    """Endless standard draws of `kind` (exponential, normal or uniform), taken from numpy in chunks."""
    draws: dict[str, Callable[[], np.ndarray]] = {
        "exponential": lambda: rng.standard_exponential(size=_CHUNK),
        "normal": lambda: rng.standard_normal(size=_CHUNK),
        "uniform": lambda: rng.random(size=_CHUNK),
    }
    draw = draws[kind]
    return itertools.chain.from_iterable(draw().tolist() for _ in itertools.count())


class _Fleet:
    """The replicas' state while a window runs."""

    def __init__(
        self, config: FleetConfig, service: ServiceModel, rng: np.random.Generator, num_measured: int
    ):
        n = config.num_replicas
        self.config, self.service = config, service
        self.service_draws = _stream(rng, service.noise)
        self.uniforms = _stream(rng, "uniform")
        self.load = [0] * n
        self.by_load = [(0, i) for i in range(n)]  # a heap with stale entries, see _least_loaded
        self.local: list[deque[tuple[float, int, int]]] = [deque() for _ in range(n)]
        self.central: deque[tuple[float, int, int]] = deque()
        self.caches: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]
        self.affinity: dict[int, int] = {}
        self.departures: list[tuple[float, int, int, float, int]] = []
        self.num_hits = 0
        self.waits = np.zeros(num_measured)
        self.service_s = np.zeros(num_measured)
        self.seq = 0

    def _least_loaded(self) -> int:
        heap, load = self.by_load, self.load
        while heap[0][0] != load[heap[0][1]]:  # entries left from earlier loads
            heapq.heappop(heap)
        return heap[0][1]

    def route(self, group: int) -> int:
        """The replica for a new request, or -1 to hold it at the gateway."""
        config, load = self.config, self.load
        if config.routing == "random":
            return int(next(self.uniforms) * config.num_replicas)
        least = self._least_loaded()
        if config.routing == "prefix":
            home = self.affinity.get(group, group % config.num_replicas)
            if load[home] < config.num_slots and load[home] <= load[least] + config.prefix_imbalance:
                return home
        return least if load[least] < config.num_slots else -1

    def _prefix_cost(self, replica: int, group: int, index: int) -> float:
        """The service-time factor of a request of prefix `group` on `replica`; updates its cache."""
        cache = self.caches[replica]
        self.affinity[group] = replica
        if group in cache:
            cache.move_to_end(group)
            self.num_hits += index >= 0
            return self.config.prefix_hit_cost
        cache[group] = None
        if len(cache) > self.config.prefix_cache_groups:
            cache.popitem(last=False)
        return 1.0

    def start(self, replica: int, now: float, arrival: float, group: int, index: int) -> None:
        """Start a request (`index` >= 0: a measured one) on `replica`, which has a free slot."""
        self.load[replica] += 1
        level = self.load[replica]
        if self.config.routing != "random":
            heapq.heappush(self.by_load, (level, replica))
        seconds = self.service.seconds(level, next(self.service_draws))
        if group >= 0:
            seconds *= self._prefix_cost(replica, group, index)
        if index >= 0:
            self.waits[index] = now - arrival
            self.service_s[index] = seconds
        self.seq += 1
        heapq.heappush(self.departures, (now + seconds, self.seq, replica, arrival, index))

    def prefill(self, level: int) -> None:
        """Put `level` requests in service on every replica at time 0, part-way through service times
        drawn at that level (unmeasured): a start near the steady state instead of an empty fleet."""
        for replica in range(self.config.num_replicas):
            for _ in range(level):
                seconds = self.service.seconds(level, next(self.service_draws)) * next(self.uniforms)
                self.seq += 1
                heapq.heappush(self.departures, (seconds, self.seq, replica, 0.0, -1))
            self.load[replica] = level
            heapq.heappush(self.by_load, (level, replica))

    def arrive(self, now: float, group: int, index: int) -> None:
        replica = self.route(group)
        if replica >= 0 and self.load[replica] < self.config.num_slots:
            self.start(replica, now, now, group, index)
        elif replica >= 0:
            self.local[replica].append((now, group, index))
        else:
            self.central.append((now, group, index))

    def depart(self) -> tuple[float, float, int]:
        """Finish the next request: (now, its arrival, its index); start the next waiting one."""
        now, _, replica, arrival, index = heapq.heappop(self.departures)
        self.load[replica] -= 1
        if self.config.routing != "random":
            heapq.heappush(self.by_load, (self.load[replica], replica))
        queue = self.local[replica] or self.central
        if queue:
            waiting_since, group, waiting_index = queue.popleft()
            self.start(replica, now, waiting_since, group, waiting_index)
        return now, arrival, index


def _groups(num_groups: int, uniforms: Iterator[float]) -> Iterator[int]:
    """Prefix groups of successive requests, Zipf(1) over `num_groups`; -1 forever for none."""
    if num_groups == 0:
        return itertools.repeat(-1)
    weights = np.cumsum(1.0 / np.arange(1, num_groups + 1))
    cumulative = (weights / weights[-1]).tolist()
    return (min(bisect.bisect(cumulative, u), num_groups - 1) for u in uniforms)


def simulate(
    config: FleetConfig,
    service: ServiceModel,
    rate: float,
    num_requests: int,
    seed: int = 0,
    initial_in_service: int = 0,
) -> WindowResult:
    """Simulate `num_requests` Poisson arrivals at `rate` per second through the fleet, which starts
    with `initial_in_service` requests on each replica (at most num_slots; see `_Fleet.prefill`)."""
    if rate <= 0 or num_requests < 1:
        raise ConfigError(f"a window needs a positive rate and requests, got {rate} and {num_requests}")
    rng = np.random.default_rng(seed)
    num_warmup = int(num_requests * config.warmup_fraction)
    num_measured = num_requests - num_warmup
    fleet = _Fleet(config, service, rng, num_measured)
    fleet.prefill(min(max(0, initial_in_service), config.num_slots))
    gaps = _stream(rng, "exponential")
    groups = _groups(config.prefix_groups, _stream(rng, "uniform"))
    latencies = np.zeros(num_measured)
    done, arrived, mean_gap = 0, 0, 1.0 / rate
    next_arrival = next(gaps) * mean_gap
    first_measured, last_measured = 0.0, 0.0  # arrival times of the first and last measured requests
    departures = fleet.departures
    while done < num_measured:
        if not departures or next_arrival <= departures[0][0]:
            index = arrived - num_warmup if num_warmup <= arrived < num_requests else -1
            if index == 0:
                first_measured = next_arrival
            elif index == num_measured - 1:
                last_measured = next_arrival
            fleet.arrive(next_arrival, next(groups), index)
            arrived += 1
            next_arrival += next(gaps) * mean_gap
            continue
        now, arrival, index = fleet.depart()
        if index >= 0:
            latencies[index] = now - arrival
            done += 1
    span = max(last_measured - first_measured, 1e-12)
    in_service = float(fleet.service_s.sum()) / span / config.num_replicas  # Little's law: λ × mean service
    return WindowResult(latencies, fleet.waits, fleet.num_hits, in_service)
