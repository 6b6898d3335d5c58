"""What `seekserve plan` prints: the model's figures, a table of layouts, why some do not fit, and
the commands of those that do; or all of it as one JSON object."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from seekserve.plan.catalog import PlannedModel
from seekserve.plan.commands import commands
from seekserve.plan.layouts import LayoutPlan
from seekserve.plan.memory import PlanConfig

__all__ = ["plan_dict", "print_plan"]


def _layout_dict(plan: LayoutPlan, model: PlannedModel, config: PlanConfig) -> dict[str, Any]:
    m = plan.memory
    lines = commands(plan, model, config) if plan.fits else None
    return {
        "gpus": plan.cluster.name,
        "num_gpus": plan.cluster.num_gpus,
        "gpu": plan.cluster.kind.name,
        "parallelism": plan.layout.name,
        "tp": plan.layout.tp,
        "pp": plan.layout.pp,
        "dp": plan.layout.dp,
        "expert_parallel": plan.layout.expert_parallel,
        "fits": plan.fits,
        "reason": plan.reason,
        "max_concurrent_tokens": plan.max_concurrent_tokens,
        "max_full_sequences": plan.max_full_sequences,
        "tokens_per_sequence": plan.tokens_per_sequence,
        "per_gpu": {
            "budget_bytes": m.budget_bytes,
            "weights_bytes": m.weights_bytes,
            "activation_bytes": m.activation_bytes,
            "runtime_bytes": m.runtime_bytes,
            "kv_cache_bytes": m.kv_cache_bytes,
            "kv_bytes_per_token": m.kv_bytes_per_token,
        },
        "notes": list(plan.notes),
        "commands": {"vllm": list(lines.vllm), "sglang": list(lines.sglang)} if lines else None,
    }


def plan_dict(model: PlannedModel, config: PlanConfig, plans: list[LayoutPlan]) -> dict[str, Any]:
    """The plan as one JSON-ready object."""
    size, dtype = model.size, config.weight_dtype(model)
    weights = size.weight_bytes(dtype, config.include_mtp)
    return {
        "model": model.name,
        "model_type": size.model_type,
        "quantization": dtype,
        "kv_cache_dtype": config.kv_cache_dtype,
        "max_model_len": config.context_len(model),
        "concurrency": config.concurrency,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "num_params": size.num_params,
        "num_active_params": size.num_active_params,
        "num_mtp_params": size.num_mtp_params,
        "weights_bytes": weights,
        "mtp_weights_bytes": size.weight_bytes(dtype, True) - size.weight_bytes(dtype, False),
        "includes_mtp": config.include_mtp,
        "kv_bytes_per_token": size.kv_bytes_per_token(config.kv_cache_dtype),
        "kv_values_per_token": size.kv_values_per_token,
        "layouts": [_layout_dict(p, model, config) for p in plans],
    }


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f}"


def _summary(data: dict[str, Any]) -> list[str]:
    attention = "MLA latent" if data["model_type"].startswith("deepseek") else "K and V"
    return [
        f"[bold]{data['model']}[/]: {data['num_params'] / 1e9:,.1f}B parameters "
        f"({data['num_active_params'] / 1e9:,.1f}B per token), weights in {data['quantization']}: "
        f"{_gb(data['weights_bytes'])} GB"
        + (
            ""
            if not data["num_mtp_params"]
            else f" (+{_gb(data['mtp_weights_bytes'])} GB MTP layer"
            + (", included)" if data["includes_mtp"] else ", not loaded)")
        ),
        f"KV cache ({attention}, {data['kv_cache_dtype']}): {data['kv_bytes_per_token']:,} bytes per token "
        f"over all layers; max_model_len {data['max_model_len']:,}, {data['concurrency']} sequences in "
        f"flight, {data['gpu_memory_utilization']:.2f} of each GPU's memory",
    ]


def _table(data: dict[str, Any]) -> Table:
    table = Table(title="Layouts (per-GPU figures in GB, for the fullest GPU)", title_justify="left")
    for name in (
        "GPUs",
        "layout",
        "fits",
        "weights",
        "act.+runtime",
        "KV cache",
        "KV tokens",
        "full seqs",
        f"tok/seq @{data['concurrency']}",
    ):
        table.add_column(name, justify="left" if name in ("GPUs", "layout", "fits") else "right")
    for row in data["layouts"]:
        g = row["per_gpu"]
        table.add_row(
            row["gpus"],
            row["parallelism"],
            "[green]yes[/]" if row["fits"] else "[red]no[/]",
            _gb(g["weights_bytes"]),
            _gb(g["activation_bytes"] + g["runtime_bytes"]),
            _gb(g["kv_cache_bytes"]),
            f"{row['max_concurrent_tokens']:,}" if row["fits"] else "-",
            f"{row['max_full_sequences']:,}" if row["fits"] else "-",
            f"{row['tokens_per_sequence']:,}" if row["fits"] else "-",
        )
    return table


def print_plan(data: dict[str, Any], console: Console | None = None) -> None:
    """The plan as text: figures, the layout table, reasons, notes and commands."""
    console = console or Console()
    for line in _summary(data):
        console.print(line)
    console.print(_table(data))
    for row in data["layouts"]:
        label = f"{row['gpus']} {row['parallelism']}"
        if not row["fits"]:
            console.print(f"[red]{label}[/] does not fit: {row['reason']}")
    for row in data["layouts"]:
        if not row["fits"]:
            continue
        console.print(f"\n[bold green]{row['gpus']} {row['parallelism']}[/]")
        for note in row["notes"]:
            console.print(f"  note: {note}")
        for engine in ("vllm", "sglang"):
            console.print(f"  [bold]{engine}[/]:")
            for line in row["commands"][engine]:
                console.print(f"    {line}", soft_wrap=True, highlight=False, markup=False)
