"""What the tests know of the runtimes seekserve does not build: the metrics vLLM, SGLang and
dcgm-exporter export and the command-line flags of the pinned vLLM and SGLang images. Each set
names the documentation it was taken from; the deploy code may use nothing outside them."""

from __future__ import annotations

VLLM_METRICS = frozenset({
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket", "vllm:request_queue_time_seconds_bucket",
})  # fmt: skip
"""vLLM v0.11 documentation, "Production Metrics" (the V1 engine's /metrics; kv_cache_usage_perc
replaced gpu_cache_usage_perc in v0.10)."""

SGLANG_METRICS = frozenset({
    "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:num_used_tokens",
    "sglang:gen_throughput", "sglang:cache_hit_rate", "sglang:prompt_tokens_total",
    "sglang:generation_tokens_total", "sglang:num_requests_total",
    "sglang:time_to_first_token_seconds_bucket", "sglang:e2e_request_latency_seconds_bucket",
    "sglang:inter_token_latency_seconds_bucket",
})  # fmt: skip
"""SGLang v0.5 documentation, "Production Metrics" (served with --enable-metrics)."""

DCGM_METRICS = frozenset({
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
})  # fmt: skip
"""dcgm-exporter 4.x, etc/default-counters.csv (the counters it exports without configuration)."""

VLLM_FLAGS = frozenset({
    "--served-model-name", "--host", "--port", "--trust-remote-code", "--tensor-parallel-size",
    "--pipeline-parallel-size", "--distributed-executor-backend", "--max-model-len",
    "--gpu-memory-utilization", "--reasoning-parser",
})  # fmt: skip
"""`vllm serve --help` of vLLM v0.11 (engine arguments and the OpenAI server's)."""

SGLANG_FLAGS = frozenset({
    "--model-path", "--served-model-name", "--trust-remote-code", "--enable-metrics", "--host", "--port",
    "--tp-size", "--dp-size", "--enable-dp-attention", "--ep-size", "--dist-init-addr", "--nnodes",
    "--node-rank", "--context-length", "--mem-fraction-static", "--reasoning-parser",
})  # fmt: skip
"""SGLang v0.5 documentation, "Server Arguments" (python -m sglang.launch_server --help)."""
