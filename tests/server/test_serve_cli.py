from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from factories import subprocess_env
from seekserve.layers.cpu_kernels import kernel_status
from server.faulty_serve import FAULT

NO_KERNELS = {"SEEKSERVE_CPU_KERNELS": "0"}
"""This session's fresh SEEKSERVE_HOME would have a child compile the CPU kernels first."""
TINY_ARGS = (
    "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "128", "--log-level", "warning",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "seekserve", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**subprocess_env(), **(env or {})},
    )


def wait_healthy(proc: subprocess.Popen[str], url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become healthy")


def test_serve_starts_prints_its_capacity_serves_and_stops_cleanly(llama_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(
        "--model", str(llama_dir), "--port", str(port), "--served-model-name", "tiny",
        "--dtype", "float32", "--max-model-len", "128", "--block-size", "8", "--num-kv-blocks", "32",
        env={"SEEKSERVE_API_KEY": "from-env"},
    )  # fmt: skip
    try:
        wait_healthy(proc, url)
        with openai.OpenAI(base_url=f"{url}/v1", api_key="from-env", max_retries=0) as client:
            r = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
            )
            assert r.usage is not None and r.usage.completion_tokens <= 3
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/chat").status_code == 200  # the page is open; what it asks is not
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "serving 'tiny'" in err and "LlamaForCausalLM, float32" in err
    assert "KV cache   256 tokens (32 blocks of 8)" in err
    assert f"kernels    {kernel_status()}" in err  # the same setting and library as this process
    assert f"{url}/v1" in err and f"chat       {url}/chat" in err
    entries = [json.loads(line) for line in out.splitlines()]
    chat = [e for e in entries if e["path"] == "/v1/chat/completions"]
    assert (
        len(chat) == 1
        and chat[0]["status"] == 200
        and chat[0]["completion_tokens"] == r.usage.completion_tokens
    )


def broken_model(kind: str, llama_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """A model that cannot load, and what the error must say."""
    if kind == "missing":
        return tmp_path / "missing", "does not exist"
    if kind == "truncated-safetensors":
        model = tmp_path / "model"
        shutil.copytree(llama_dir, model)
        weights = model / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 2)  # a download cut half-way
        return model, f"{weights} is not a readable safetensors file"
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\xff" * 12)  # a header cut short
    return gguf, f"{gguf} is not a readable GGUF file"


@pytest.mark.parametrize("kind", ["missing", "truncated-safetensors", "truncated-gguf"])
def test_serve_exits_with_a_clear_error_when_the_model_cannot_load(
    kind: str, llama_dir: Path, tmp_path: Path
) -> None:
    model, needle = broken_model(kind, llama_dir, tmp_path)
    proc = serve("--model", str(model), "--port", str(free_port()), env=NO_KERNELS)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Error: the model failed to load: " in err and needle in err and "Traceback" not in err


def test_a_key_on_the_command_line_gets_a_warning_and_one_from_the_environment_none(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    proc = serve("--model", missing, "--port", str(free_port()), "--api-key", "on-the-line")
    _, err = proc.communicate(timeout=120)
    assert "an --api-key on the command line is visible to every user" in err and "on-the-line" not in err
    proc = serve("--model", missing, "--port", str(free_port()), env={"SEEKSERVE_API_KEY": "from-env"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "--api-key on the command line" not in err and "from-env" not in err


def test_serve_rejects_bad_options_before_loading(llama_dir: Path) -> None:
    proc = serve("--model", str(llama_dir), "--request-timeout-s", "-1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "request_timeout_s=-1.0 is invalid" in err


def test_serve_rejects_web_search_without_what_its_provider_needs(llama_dir: Path) -> None:
    proc = serve("--model", str(llama_dir), "--web-search", "auto", "--port", str(free_port()))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    assert "the local search provider needs a folder of .txt/.md/.html files (none given)" in err
    proc = serve("--model", str(llama_dir), "--web-search", "on", "--search-provider", "searxng")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "the searxng search provider needs the instance's URL" in err
    proc = serve("--model", str(llama_dir), "--web-search", "on", "--search-max-queries", "9")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "max_queries=9" in err and "1 to 5 queries" in err


def test_serve_help_lists_server_and_engine_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seekserve", "serve", "--help"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip
    assert result.returncode == 0
    for flag in (
        "--api-key",
        "SEEKSERVE_API_KEY",
        "--reasoning-parser [deepseek_r1|none]",
        "--max-queue-len",
        "--web-search [off|auto|on]",
        "--search-provider [local|searxng|bing|brave|tavily]",
        "--search-allow-hosts HOST,...",
        "--search-queries [last|model]",
        "--search-max-queries INTEGER",
    ):
        assert flag in result.stdout


def stream_events(url: str, max_tokens: int, seen: list[str]) -> tuple[int, list[str]]:
    """POST a streamed completion; its status and its SSE payloads, each also appended to `seen`."""
    body = {"model": "tiny", "prompt": "Once", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    events: list[str] = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        if response.status_code != 200:
            return response.status_code, [response.read().decode()]
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                seen.append(line[6:])
    return 200, events


@pytest.mark.timeout(180)
def test_an_engine_step_that_raises_errors_every_stream_and_the_process_exits_to_be_restarted(
    llama_dir: Path, tmp_path: Path
) -> None:
    """One stream decodes (max_num_seqs=1) and two wait when a step raises: all three end unfinished
    with an OpenAI error before their [DONE], the process exits with status 1 naming the failure,
    and the same command started again (as its supervisor would) serves."""

    trigger = tmp_path / "fail-now"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["--model", str(llama_dir), "--port", str(port), *TINY_ARGS, "--max-num-seqs", "1"]
    driver = Path(__file__).with_name("faulty_serve.py")
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(trigger), *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**subprocess_env(), **NO_KERNELS},
    )  # fmt: skip
    try:
        wait_healthy(proc, url)
        seen: list[str] = []
        with ThreadPoolExecutor(3) as pool:
            streams = [pool.submit(stream_events, url, 100, seen) for _ in range(3)]
            deadline = time.monotonic() + 60
            while len(seen) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            trigger.touch()
            results = [s.result(timeout=60) for s in streams]
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    for status, events in results:
        # As vLLM does, the server ends a failed stream with the error event, then [DONE].
        assert status == 200 and events[-1] == "[DONE]", (status, events)
        error = json.loads(events[-2])["error"]
        assert FAULT in error["message"] and error["code"] == "engine_dead", events[-2]
        chunks = [json.loads(e) for e in events[:-2]]
        assert not [c for c in chunks if "error" in c or c["choices"][0]["finish_reason"] is not None]
    assert sorted(len(events) > 2 for _, events in results) == [False, False, True]  # one had begun
    assert proc.returncode == 1
    assert f"the engine stopped after an internal error: RuntimeError('{FAULT}')" in err
    assert "the server stopped so that it can be restarted" in err
    restarted = serve(*argv, env=NO_KERNELS)
    try:
        wait_healthy(restarted, url)
        assert stream_events(url, 4, [])[1][-1] == "[DONE]"
    finally:
        restarted.send_signal(signal.SIGINT)
        restarted.communicate(timeout=60)
    assert restarted.returncode == 0
