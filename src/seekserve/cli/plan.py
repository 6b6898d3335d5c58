"""`seekserve plan`: GPU memory and layouts for a model; `seekserve plan fleet`: fleet sizing."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import click

from seekserve.cli.options import dataclass_option
from seekserve.errors import SeekserveError
from seekserve.models.sizing import WEIGHT_DTYPES
from seekserve.plan.memory import PlanConfig

__all__ = ["plan"]


_option = partial(dataclass_option, PlanConfig)


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
        data = plan_dict(planned, config, plan_layouts(planned, clusters, config))
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        print_plan(data)
