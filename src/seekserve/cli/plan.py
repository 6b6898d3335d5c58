"""`seekserve plan`: GPU memory and layouts for a model; `seekserve plan fleet`: fleet sizing."""

from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from typing import Any

import click

from seekserve.cli.options import dataclass_option
from seekserve.errors import ConfigError, SeekserveError
from seekserve.models.sizing import WEIGHT_DTYPES
from seekserve.plan.autoscale import AutoscaleConfig
from seekserve.plan.memory import PlanConfig
from seekserve.plan.profile import BUILTIN_PROFILES, LATENCY_METRICS
from seekserve.plan.simulator import ROUTINGS, FleetConfig
from seekserve.plan.traffic import TrafficConfig

__all__ = ["plan"]


_option = partial(dataclass_option, PlanConfig)
_traffic = partial(dataclass_option, TrafficConfig)
_autoscale = partial(dataclass_option, AutoscaleConfig)
_fleet = partial(dataclass_option, FleetConfig)


@click.group(
    invoke_without_command=True, short_help="GPU memory, layouts and commands for a model; fleet sizing."
)
@click.option("--model", metavar="CONFIG|DIR|NAME", help="config.json, a model folder, or a known name.")
@click.option(
    "--gpus",
    metavar="CLUSTERS",
    help="Comma-separated clusters, e.g. 8xH100,2x8xH100,8xH200; unset: a set sized to the model.",
)
@_option("quantization", type=click.Choice(WEIGHT_DTYPES))
@_option("kv_cache_dtype", type=click.Choice(["bf16", "fp8"]))
@_option("max_model_len", type=click.IntRange(min=1))
@_option("concurrency", type=click.IntRange(min=1))
@_option("gpu_memory_utilization", type=click.FloatRange(0, 1, min_open=True))
@_option("max_num_batched_tokens", type=click.IntRange(min=1))
@_option("include_mtp", "--mtp", is_flag=True, show_default=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.pass_context
def plan(ctx: click.Context, model: str | None, gpus: str | None, as_json: bool, **options: Any) -> None:
    """Which GPU layouts hold MODEL, with how many tokens of KV cache, and the vLLM and SGLang
    commands that start those that fit. `seekserve plan fleet` sizes a fleet for a traffic.

    \b
    Examples:
      seekserve plan --model deepseek-ai/DeepSeek-R1 --gpus 8xH100,8xH200,2x8xH100,4x8xH100
      seekserve plan --model DeepSeek-R1-Distill-Qwen-7B --gpus 1xRTX4090 --max-model-len 32768
      seekserve plan --model /models/DeepSeek-V3/config.json --gpus 8xH200 --json
    """
    if ctx.invoked_subcommand is not None:
        if model or gpus or as_json:
            raise click.UsageError(
                f"--model, --gpus and --json belong to `seekserve plan`, not `plan {ctx.invoked_subcommand}`"
            )
        return
    if model is None:
        raise click.UsageError("give --model CONFIG|DIR|NAME (or run `seekserve plan fleet`)")
    from seekserve.plan.catalog import load_model
    from seekserve.plan.gpus import parse_cluster
    from seekserve.plan.layouts import default_clusters, plan_layouts
    from seekserve.plan.report import plan_dict, print_plan

    try:
        config = PlanConfig(**options)
        planned = load_model(model)
        spec = gpus or default_clusters(planned.size.weight_bytes(config.weight_dtype(planned)))
        clusters = [parse_cluster(part) for part in spec.split(",") if part.strip()]
        if not clusters:
            raise ConfigError(f"--gpus {spec!r} names no cluster: write e.g. 8xH100,2x8xH100")
        data = plan_dict(planned, config, plan_layouts(planned, clusters, config))
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        print_plan(data)


@plan.command(short_help="Size a fleet for a day of traffic by simulation.")
@click.option(
    "--traffic", "traffic_rate", required=True, metavar="RATE", help="e.g. 120M/day, 1400/s, 5k/min."
)
@click.option(
    "--slo-p99", "slo_p99", required=True, metavar="SECONDS", help="p99 latency to meet, e.g. 1.5s."
)
@click.option(
    "--profile",
    "profile_paths",
    multiple=True,
    metavar="BENCH.json",
    help="`seekserve bench --result-json` files, one per --max-concurrency: the replica's latency.",
)
@click.option(
    "--latency",
    type=click.Choice(LATENCY_METRICS),
    default="e2e",
    show_default=True,
    help="Which latency of the bench files the SLO is about.",
)
@click.option(
    "--replica",
    type=click.Choice(sorted(BUILTIN_PROFILES)),
    default="r1-8xh200-short",
    show_default=True,
    help="A stated profile, used without --profile (see docs/plan.md).",
)
@click.option(
    "--gpus-per-replica", type=click.IntRange(min=1), help="GPUs one replica uses (needed with --profile)."
)
@click.option(
    "--max-num-seqs",
    type=click.IntRange(min=1),
    help="Requests one replica serves at once; unset: the profile's highest concurrency.",
)
@_fleet("routing", type=click.Choice(ROUTINGS))
@_fleet("prefix_groups", type=click.IntRange(min=0))
@_fleet("prefix_hit_cost", type=click.FloatRange(0, 1, min_open=True))
@_traffic("peak_to_mean", type=float)
@_traffic("peak_hour", type=float)
@_traffic("bursts_per_day", type=float)
@_traffic("burst_factor", type=float)
@_traffic("burst_s", "--burst-seconds", type=float)
@_autoscale("start_s", "--replica-start", type=float, metavar="SECONDS")
@_autoscale("cooldown_s", "--cooldown", type=float, metavar="SECONDS")
@_autoscale("interval_s", "--scale-interval", type=click.IntRange(min=1), metavar="SECONDS")
@_autoscale("target_utilization", type=click.FloatRange(0, 1, min_open=True))
@_autoscale("min_replicas", type=click.IntRange(min=1))
@_autoscale("max_replicas", type=click.IntRange(min=1))
@click.option(
    "--window-requests",
    type=click.IntRange(min=1000),
    default=20_000,
    show_default=True,
    help="Requests per simulated steady-state window (more: steadier p99, slower).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def fleet(**options: Any) -> None:
    """Simulate a fleet of replicas through a day of TRAFFIC (a diurnal curve with bursts) and report
    the replicas each hour needs, p50/p99, GPU-hours, and what breaks the SLO first.

    \b
    Examples:
      seekserve plan fleet --traffic 120M/day --slo-p99 1.5s
      seekserve plan fleet --traffic 2M/day --slo-p99 2s --profile c8.json --profile c32.json \\
          --profile c128.json --gpus-per-replica 1 --routing prefix --prefix-groups 64
    """
    from seekserve.plan.fleet import FleetSizer, plan_fleet
    from seekserve.plan.fleet_report import fleet_dict, print_fleet

    started = time.perf_counter()
    as_json = options.pop("as_json")
    try:
        traffic, profile, fleet_config, autoscale, slo = _fleet_configs(options)
        sizer = FleetSizer(profile, fleet_config, slo, options["window_requests"], options["seed"])
        result = plan_fleet(traffic, sizer, autoscale)
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    method = {
        "window_requests": options["window_requests"],
        "num_windows": result.num_windows,
        "seed": options["seed"],
        "elapsed_s": time.perf_counter() - started,
    }
    data = fleet_dict(result, traffic, profile, fleet_config, autoscale, method)
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        print_fleet(data)


def _fleet_configs(o: dict[str, Any]) -> tuple[TrafficConfig, Any, FleetConfig, AutoscaleConfig, float]:
    from seekserve.plan.profile import load_bench_profile
    from seekserve.plan.traffic import parse_rate, parse_seconds

    traffic = TrafficConfig(
        parse_rate(o["traffic_rate"]),
        **{k: o[k] for k in ("peak_to_mean", "peak_hour", "bursts_per_day", "burst_factor", "burst_s")},
    )
    if o["profile_paths"]:
        if o["gpus_per_replica"] is None:
            raise ConfigError("with --profile, say how many GPUs one replica uses: --gpus-per-replica N")
        profile = load_bench_profile(o["profile_paths"], o["gpus_per_replica"], o["latency"])
    else:
        profile = BUILTIN_PROFILES[o["replica"]]
        if o["gpus_per_replica"] is not None:
            profile = dataclasses.replace(profile, gpus_per_replica=o["gpus_per_replica"])
    slots = min(o["max_num_seqs"] or profile.max_concurrency, profile.max_concurrency)
    fleet_config = FleetConfig(
        1, slots, o["routing"], prefix_groups=o["prefix_groups"], prefix_hit_cost=o["prefix_hit_cost"]
    )
    autoscale = AutoscaleConfig(
        **{
            k: o[k]
            for k in (
                "start_s",
                "cooldown_s",
                "interval_s",
                "target_utilization",
                "min_replicas",
                "max_replicas",
            )
        }
    )
    return traffic, profile, fleet_config, autoscale, parse_seconds(o["slo_p99"])
