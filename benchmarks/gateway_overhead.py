"""Latency the gateway adds, and the load it carries, next to LiteLLM's proxy, in one run.

    python benchmarks/gateway_overhead.py                       # seekserve gateway and LiteLLM, all points
    python benchmarks/gateway_overhead.py --gateways custom --points "seq sat r1000"

Drives the anchors' gateway harness (`../shared/anchors/gateway/run.sh`) once per gateway, one after
the other (it gives every gateway the same port): a fast fake upstream and the load driver share
CPU 0, the gateway under test has CPU 1 alone; for each mode (non-streaming, streaming 16 tokens) and
load point it measures the upstream directly, then through the gateway; added latency is against
that direct run.
`seekserve gateway --upstream URL` runs as the harness's "custom" gateway. Prints the added
latency per gateway and writes results/gateway_overhead.json. Needs the harness set up:
`bash ../shared/anchors/gateway/setup.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import DEFAULT_ANCHORS, REPO, machine, print_table, write_json

QUANTILES = ("p50", "p99")


def added(gateway: dict[str, Any], direct: dict[str, Any], key: str, q: str) -> float | None:
    g, d = (gateway.get(key) or {}).get(q), (direct.get(key) or {}).get(q)
    return None if g is None or d is None else g - d


def summarize(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_label = {tuple(r["label"].split("|")): r for r in lines if r.get("label", "").count("|") == 2}
    rows = []
    for (target, mode, point), record in sorted(by_label.items()):
        if target.startswith("direct") or "skipped" in record:
            continue
        direct = by_label.get((f"direct-{target}", mode, point), {})
        rows.append(
            {
                "gateway": target,
                "mode": mode,
                "point": point,
                "added_e2e_ms": {q: added(record, direct, "e2e_ms", q) for q in QUANTILES},
                "added_ttft_ms": {q: added(record, direct, "ttft_ms", q) for q in QUANTILES},
                "rps_direct": direct.get("achieved_rps"),
                "rps_gateway": record.get("achieved_rps"),
                "ok": record.get("ok"),
                "sent": record.get("sent"),
                "errors": record.get("errors"),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", default="custom litellm", help='"custom" is seekserve gateway')
    ap.add_argument("--points", default="seq sat r200 r500 r1000")
    ap.add_argument("--modes", default="nonstream stream")
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--gw-dir", type=Path, default=Path(os.environ.get("GW_DIR", "/tmp/anchors/gw")))
    ap.add_argument("--json", type=Path, default=REPO / "results" / "gateway_overhead.json")
    args = ap.parse_args()
    harness = args.anchors / "gateway"
    if not (args.gw_dir / "harness" / "bin" / "python").is_file():
        sys.exit(f"no gateway harness under {args.gw_dir}: run bash {harness / 'setup.sh'} first")
    command = (
        f"{sys.executable} -m seekserve gateway --port {{port}} --upstream {{upstream}} --log-level warning"
    )
    lines: list[dict[str, Any]] = []
    raw: list[str] = []
    for gateway in args.gateways.split():  # run.sh gives every gateway one port: one gateway per run
        env = {
            **os.environ,
            "GATEWAYS": gateway,
            "POINTS": args.points,
            "MODES": args.modes,
            "GW_DIR": str(args.gw_dir),
            "GW_CUSTOM_CMD": command,
            "GW_CUSTOM_HEALTH": "/health",
        }
        before = set((args.gw_dir / "results").glob("run-*.jsonl"))
        subprocess.run(["bash", str(harness / "run.sh")], env=env, check=True)
        new = sorted(set((args.gw_dir / "results").glob("run-*.jsonl")) - before)
        if not new:
            sys.exit("run.sh wrote no results file")
        raw.append(str(new[-1]))
        for line in new[-1].read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                target, _, rest = record.get("label", "").partition("|")
                if target == "direct":  # each gateway against the direct run made just before it
                    record["label"] = f"direct-{gateway}|{rest}"
                lines.append(record)
    rows = summarize(lines)
    names = {"custom": "seekserve"}

    def fmt(pair: dict[str, float | None]) -> str:
        return " / ".join("–" if pair[q] is None else f"{pair[q]:.2f}" for q in QUANTILES)

    print_table(
        "Added latency (ms, gateway minus direct) and throughput",
        ["gateway", "mode", "load", "added e2e p50 / p99", "added TTFT p50 / p99", "req/s direct / gateway",
         "ok / sent"],
        [
            [
                names.get(r["gateway"], r["gateway"]), r["mode"], r["point"], fmt(r["added_e2e_ms"]),
                fmt(r["added_ttft_ms"]), f"{r['rps_direct']} / {r['rps_gateway']}",
                f"{r['ok']} / {r['sent']}",
            ]
            for r in rows
        ],
    )  # fmt: skip
    write_json(args.json, {"machine": machine(), "raw": raw, "rows": rows, "records": lines})


if __name__ == "__main__":
    main()
