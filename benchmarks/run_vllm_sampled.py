"""The anchors' vLLM runner (`run_vllm.py`) with every timed request sampled instead of greedy.

    $ANCHORS_DIR/vllm/bin/python benchmarks/run_vllm_sampled.py WORKLOAD --temperature 0.6 --top-p 0.95 \
        --anchors ../shared/anchors [run_vllm.py's flags, e.g. --reserved-cpus 0]

Runs `run_vllm.py` unchanged (same engine options, warm-up and timing) with `LLM.generate` wrapped
so that the timed requests carry the temperature and top_p given here (no per-request seed, as a
user's requests come), their other parameters unchanged; the 4-token warm-up stays greedy. Prints
run_vllm.py's JSON record with `temperature` and `top_p` added.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--temperature", type=float, required=True)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--anchors", type=Path, required=True, help="the folder of run_vllm.py")
    args, rest = ap.parse_known_args()

    from vllm import LLM, SamplingParams

    generate = LLM.generate

    def sampled(self: Any, prompts: Any, params: Any = None, *rest: Any, **kwargs: Any) -> Any:
        if params is not None and params.max_tokens > 4:  # the timed requests, not the warm-up
            params = SamplingParams(
                temperature=args.temperature,
                top_p=args.top_p,
                max_tokens=params.max_tokens,
                ignore_eos=params.ignore_eos,
                detokenize=params.detokenize,
            )
        return generate(self, prompts, params, *rest, **kwargs)

    LLM.generate = sampled  # type: ignore[method-assign]

    sys.path.insert(0, str(args.anchors))
    import workloads  # the anchors' module, which run_vllm.py imports too

    emit = workloads.emit
    workloads.emit = lambda record: emit({**record, "temperature": args.temperature, "top_p": args.top_p})
    spec = importlib.util.spec_from_file_location("run_vllm", args.anchors / "run_vllm.py")
    assert spec and spec.loader, f"cannot import {args.anchors / 'run_vllm.py'}"
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    sys.argv = [str(args.anchors / "run_vllm.py"), *rest]
    runner.main()


if __name__ == "__main__":
    main()
