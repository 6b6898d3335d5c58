"""The load generator behind `seekserve bench`: one module per role.

    config.py         BenchConfig: target, load, dataset, SLOs
    lengths.py        token-length distributions (fixed, uniform, normal, exponential)
    datasets.py       random prompts, JSONL, ShareGPT -> BenchRequest
    shared_prefix.py  a few long system prompts shared by many requests (prefix caching, routing)
    arrivals.py       all-at-once, constant, Poisson, gamma (burstiness), trace
    sse.py            incremental server-sent-events parser
    client.py         streaming OpenAI client on one pooled aiohttp session -> RequestRecord
    runner.py         warm-up, the send loop, concurrency limit, duration -> BenchRun
    metrics.py        per-request figures and the run summary (percentiles, goodput, stalls)
    report.py         progress bar, terminal tables, JSON result
    plot.py           latency CDFs and gaps over time (matplotlib)
    fake_server.py    a scripted fake OpenAI server (client capacity, tests)
    servers.py        start, wait for and stop server processes (for comparisons)
    compare.py        run a scenario on several servers, interleaved; medians and ratios

Python use: `from seekserve.bench.runner import run; run(BenchConfig(...)).summary`.
Nothing here imports torch.
"""
