"""The fleet simulator against queueing theory: mean waits of M/M/1 and M/M/c queues.

    python benchmarks/plan_sim.py                       # every case, 5 seeds, 200,000 requests each
    python benchmarks/plan_sim.py --seeds 3 --requests 100000

Each case runs `seekserve.plan.simulator.simulate` with exponential service (mean 1 s) and Poisson
arrivals, and compares the mean wait in queue (W_q) with the closed form (`plan/queueing.py`):
one replica of c slots (1xc) is M/M/c; N replicas of one slot behind least-loaded routing (requests held at
the gateway until a slot frees) are M/M/N; random routing splits the arrivals into N M/M/1 queues at
λ/N. Reports per case the theory, the simulated mean over seeds, its relative error and the largest
error of one seed, and the simulator's speed; writes results/plan_sim.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import REPO, machine, print_table, write_json

sys.path.insert(0, str(REPO / "src"))

from seekserve.plan.queueing import mmc_mean_wait
from seekserve.plan.simulator import ExponentialService, FleetConfig, Routing, simulate

# (label, replicas, slots per replica, routing, utilization)
CASES: list[tuple[str, int, int, Routing, float]] = [
    ("M/M/1", 1, 1, "least-loaded", 0.3),
    ("M/M/1", 1, 1, "least-loaded", 0.5),
    ("M/M/1", 1, 1, "least-loaded", 0.7),
    ("M/M/1", 1, 1, "least-loaded", 0.9),
    ("M/M/4 (1x4)", 1, 4, "least-loaded", 0.5),
    ("M/M/4 (1x4)", 1, 4, "least-loaded", 0.75),
    ("M/M/4 (1x4)", 1, 4, "least-loaded", 0.9),
    ("M/M/8 (8x1)", 8, 1, "least-loaded", 0.8),
    ("M/M/32 (8x4)", 8, 4, "least-loaded", 0.9),
    ("4 M/M/1 (random)", 4, 1, "random", 0.7),
]


def theory(replicas: int, slots: int, routing: str, rate: float) -> float:
    if routing == "random":
        return mmc_mean_wait(slots, rate / replicas, 1.0)
    return mmc_mean_wait(replicas * slots, rate, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "plan_sim.json")
    args = ap.parse_args()
    rows, records, total_requests, total_s = [], [], 0, 0.0
    for label, replicas, slots, routing, rho in CASES:
        rate = rho * replicas * slots
        expected = theory(replicas, slots, routing, rate)
        config = FleetConfig(replicas, slots, routing, warmup_fraction=0.05)
        waits = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            waits.append(simulate(config, ExponentialService(1.0), rate, args.requests, seed).mean_wait_s)
            total_s += time.perf_counter() - started
            total_requests += args.requests
        errors = [w / expected - 1 for w in waits]
        mean = statistics.fmean(waits)
        worst = max(errors, key=abs)
        rows.append(
            [
                label,
                f"{rho:.2f}",
                f"{expected:.4f}",
                f"{mean:.4f}",
                f"{mean / expected - 1:+.2%}",
                f"{worst:+.2%}",
            ]
        )
        records.append(
            {
                "case": label,
                "replicas": replicas,
                "slots": slots,
                "routing": routing,
                "utilization": rho,
                "rate": rate,
                "theory_wait_s": expected,
                "sim_waits_s": waits,
                "mean_error": mean / expected - 1,
                "worst_seed_error": worst,
            }
        )
    header = ["queue", "rho", "W_q theory (s)", "W_q sim (s)", "error of mean", "worst seed"]
    print_table(f"simulated vs theory, {args.seeds} seeds x {args.requests:,} requests", header, rows)
    speed = total_requests / total_s
    print(f"simulator: {speed:,.0f} requests/s ({total_requests:,} requests in {total_s:.1f} s)")
    write_json(
        args.json,
        {
            "machine": machine(),
            "seeds": args.seeds,
            "requests": args.requests,
            "requests_per_s": speed,
            "cases": records,
        },
    )


if __name__ == "__main__":
    main()
