"""`seekserve bench`: load an OpenAI-compatible server and report what its users would feel."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import click

from seekserve.bench.config import ARRIVAL_NAMES, SLO_METRICS, BenchConfig, parse_slo
from seekserve.cli.options import dataclass_option
from seekserve.errors import ConfigError, SeekserveError

BENCH_NEEDS_AIOHTTP = "seekserve bench needs aiohttp: pip install 'seekserve[bench]'"

_option = partial(dataclass_option, BenchConfig)
"""A click option for a BenchConfig field: its docstring as help, its default as default."""

_POSITIVE = click.IntRange(min=1)


@click.command(short_help="Load an OpenAI-compatible server; report TTFT, stalls, goodput.")
@_option("base_url", required=True)
@_option("model", required=True)
@_option("endpoint", type=click.Choice(["chat", "completions"]))
@_option("num_requests", type=_POSITIVE)
@_option("duration_s", "--duration", type=float, metavar="SECONDS")
@_option("max_concurrency", type=_POSITIVE)
@_option("request_rate", type=float, metavar="REQ/S")
@_option("arrival", type=click.Choice(ARRIVAL_NAMES))
@_option("burstiness", type=float)
@_option("dataset", metavar="random|shared-prefix[:N,LEN]|jsonl:PATH|sharegpt:PATH")
@_option("input_len", metavar="DIST")
@_option("output_len", metavar="DIST")
@_option("tokenizer", metavar="PATH")
@click.option(
    "--slo",
    "slo",
    multiple=True,
    metavar="METRIC=SECONDS",
    help="An SLO for goodput, repeatable: " + "; ".join(f"{k}: {v}" for k, v in SLO_METRICS.items()) + ".",
)
@_option("stall_threshold_s", "--stall-threshold", type=float, metavar="SECONDS")
@_option("ignore_eos", "--ignore-eos/--no-ignore-eos")
@_option("temperature", type=float)
@_option("top_p", "--top-p", type=float)
@click.option(
    "--extra-body", "extra_body", metavar="JSON", help="JSON object merged into every request body."
)
@_option("api_key", envvar="SEEKSERVE_API_KEY", show_envvar=True)
@_option("request_timeout_s", "--timeout", type=float, metavar="SECONDS")
@_option("num_warmup", type=click.IntRange(min=0))
@_option("seed", type=int)
@_option("label")
@click.option(
    "--result-json", "result_json", type=click.Path(dir_okay=False), help="Write the result as JSON here."
)
@click.option("--detailed", is_flag=True, help="Keep every token's arrival time in the JSON result.")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), help="Write a figure (PNG, SVG, PDF) here.")
def bench(
    slo: tuple[str, ...],
    extra_body: str | None,
    result_json: str | None,
    detailed: bool,
    plot: str | None,
    **options: Any,
) -> None:
    """Send streaming requests to an OpenAI-compatible server and measure TTFT,
    inter-token gaps and stalls, latency percentiles, throughput and goodput.

    \b
    Examples:
      seekserve bench --base-url http://127.0.0.1:8000 --model gemma3-270m --num-requests 200 \\
          --request-rate 4 --input-len uniform:64,512 --output-len 128 --slo ttft=0.5 --slo itl=0.1
      seekserve bench --base-url http://127.0.0.1:8000 --model m --max-concurrency 8 --duration 60
    """
    _check_client()
    from seekserve.bench import plot as plotting
    from seekserve.bench.report import ProgressReporter, print_summary, write_json
    from seekserve.bench.runner import run

    try:
        config = BenchConfig(
            **options, slos=dict(parse_slo(s) for s in slo), extra_body=_json_object(extra_body)
        )
        if plot:
            plotting.check_plotting()
        result = run(config, ProgressReporter())
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    print_summary(result)
    if result_json:
        write_json(result, result_json, detailed)
        click.echo(f"result written to {Path(result_json).resolve()}")
    if plot:
        plotting.plot_run(result, plot)
        click.echo(f"figure written to {Path(plot).resolve()}")
    if result.summary.num_completed == 0:
        raise click.ClickException("every request failed (see the errors above)")


def _check_client() -> None:
    """Exit with the install command when aiohttp (the `bench` extra) is missing."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise click.ClickException(BENCH_NEEDS_AIOHTTP) from None


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(
            f"--extra-body is not valid JSON ({e}): give an object such as '{{\"top_k\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError("--extra-body must be a JSON object such as '{\"top_k\": 1}'")
    return value
