"""Decode speed and KV-cache size of DeepSeek's MLA + MoE against a dense Llama of equal active size.

    python benchmarks/deepseek_decode.py                    # the defaults below: bf16 on CPU
    python benchmarks/deepseek_decode.py --layers 2 --experts 4 --vocab 1024 \\
        --context 16 --steps 4 --batch-sizes 1,2            # smoke run

The DeepSeek model is random, with DeepSeek-V2-Lite's attention and expert dimensions (hidden 2048,
16 heads, kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128, v_head_dim 128, a plain query
projection; experts 1408 wide, 2 shared, top-6; a dense first layer 10944 wide) but fewer layers
(--layers, 27 in V2-Lite) and routed experts (--experts, 64 in V2-Lite), so it loads in seconds.
With fewer experts a batch touches a larger share of them than it would in V2-Lite.

The Llama has the same hidden size, heads, layers and vocabulary, grouped-query attention with
--llama-kv-heads KV heads, and the MLP width that makes its activated parameters per token equal the
DeepSeek model's (as models/sizing.py counts them).

For each batch size, B requests with --context-token prompts are prefilled, one decode step warms
up, then --steps decode steps are timed. Reported: decode tokens/s, median ms per step, KV-cache
bytes per token as the engine allocates them, and parameters (total and activated).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from common import REPO, machine, median, print_table, random_model_dir, write_json
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams
from seekserve.models.sizing import model_size

V2_LITE_SHAPE: dict[str, Any] = dict(
    hidden_size=2048,
    intermediate_size=10944,
    moe_intermediate_size=1408,
    num_attention_heads=16,
    num_key_value_heads=16,
    q_lora_rank=None,
    kv_lora_rank=512,
    qk_rope_head_dim=64,
    qk_nope_head_dim=128,
    v_head_dim=128,
    n_shared_experts=2,
    num_experts_per_tok=6,
    first_k_dense_replace=1,
    topk_method="greedy",
    rope_parameters={
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 40.0,
        "original_max_position_embeddings": 4096,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "mscale": 0.707,
        "mscale_all_dim": 0.707,
    },
    max_position_embeddings=163840,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)


def deepseek_shape(layers: int, experts: int, vocab: int) -> dict[str, Any]:
    return {**V2_LITE_SHAPE, "num_hidden_layers": layers, "n_routed_experts": experts, "vocab_size": vocab}


def llama_shape(deepseek: dict[str, Any], kv_heads: int) -> dict[str, Any]:
    """A Llama of the DeepSeek model's hidden size, heads, layers and vocabulary, equal in activated size."""
    shape: dict[str, Any] = dict(
        hidden_size=deepseek["hidden_size"],
        num_attention_heads=deepseek["num_attention_heads"],
        num_key_value_heads=kv_heads,
        num_hidden_layers=deepseek["num_hidden_layers"],
        vocab_size=deepseek["vocab_size"],
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    target = model_size({"model_type": "deepseek_v2", **deepseek}).num_active_params
    base = model_size({"model_type": "llama", **shape, "intermediate_size": 0}).num_active_params
    per_unit = 3 * shape["hidden_size"] * shape["num_hidden_layers"]  # gate, up, down per unit of width
    shape["intermediate_size"] = max(64, round((target - base) / per_unit / 64) * 64)
    return shape


def measure(model_dir: Path, batch: int, context: int, steps: int, dtype: str) -> dict[str, float]:
    """Prefill `batch` random prompts, warm up one step, then time `steps` decode steps."""
    max_len = context + steps + 72  # room for the tokens early requests decode while later ones prefill
    engine = LLMEngine.from_options(
        model=str(model_dir),
        dtype=dtype,
        max_model_len=max_len,
        max_num_seqs=batch,
        max_num_batched_tokens=max(512, batch),
        enable_prefix_caching=False,
        max_stall_factor=None,  # prompts take the whole budget: this measures decoding, not pacing
        num_kv_blocks=batch * -(-max_len // 16) + 1,
    )
    gen = torch.Generator().manual_seed(batch)
    vocab = engine.model.config.vocab_size
    params = SamplingParams(temperature=0.0, max_tokens=steps + 64, ignore_eos=True)
    for i in range(batch):
        engine.add_request(f"r{i}", torch.randint(10, vocab, (context,), generator=gen).tolist(), params)
    started: set[str] = set()
    while len(started) < batch:  # prefill (chunked) until every request has its first token
        started.update(o.request_id for o in engine.step() if o.outputs[0].token_ids)
    engine.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        outputs = engine.step()
        times.append(time.perf_counter() - t)
        assert len(outputs) == batch, f"a step decoded {len(outputs)} requests, expected {batch}"
    return {
        "decode_tok_s": batch * steps / sum(times),
        "step_ms": 1000 * median(times),
        "kv_bytes_per_token": engine.kv_bytes_per_token,
        "weight_bytes": engine.weight_bytes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4, help="decoder layers (V2-Lite: 27)")
    ap.add_argument("--experts", type=int, default=16, help="routed experts (V2-Lite: 64)")
    ap.add_argument("--vocab", type=int, default=102400, help="vocabulary (V2-Lite: 102400)")
    ap.add_argument("--llama-kv-heads", type=int, default=4, help="KV heads of the Llama (of 16 heads)")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--context", type=int, default=256, help="prompt tokens per request")
    ap.add_argument("--steps", type=int, default=32, help="timed decode steps")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "deepseek_decode.json")
    args = ap.parse_args()

    deepseek = deepseek_shape(args.layers, args.experts, args.vocab)
    llama = llama_shape(deepseek, args.llama_kv_heads)
    tag = f"l{args.layers}-v{args.vocab}"
    models = {
        "deepseek (MLA+MoE)": (
            random_model_dir(f"deepseek-v2-lite-shape-{tag}-e{args.experts}", "DeepseekV2Config", deepseek),
            model_size({"model_type": "deepseek_v2", **deepseek}),
        ),
        "llama (GQA, dense)": (
            random_model_dir(
                f"llama-equal-active-{tag}-kv{args.llama_kv_heads}-i{llama['intermediate_size']}",
                "LlamaConfig",
                llama,
            ),
            model_size({"model_type": "llama", **llama}),
        ),
    }
    rows, results = [], []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for name, (model_dir, size) in models.items():
            r = measure(model_dir, batch, args.context, args.steps, args.dtype)
            r.update(model=name, batch=batch, params=size.num_params, active_params=size.num_active_params)
            results.append(r)
            rows.append(
                [
                    name,
                    batch,
                    f"{size.num_params / 1e9:.2f}B / {size.num_active_params / 1e9:.2f}B",
                    int(r["kv_bytes_per_token"]),
                    r["decode_tok_s"],
                    r["step_ms"],
                ]
            )
    print_table(
        f"decode, {args.dtype}, context {args.context}, {args.layers} layers",
        ["model", "batch", "params total / active", "KV bytes/token", "decode tok/s", "ms/step"],
        rows,
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "dtype": args.dtype,
            "context": args.context,
            "steps": args.steps,
            "deepseek_shape": deepseek,
            "llama_shape": llama,
            "note": f"DeepSeek-V2-Lite MLA and MoE dimensions with {args.layers} of 27 layers and "
            f"{args.experts} of 64 routed experts",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
