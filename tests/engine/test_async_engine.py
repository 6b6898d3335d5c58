from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from factories import greedy, hf_greedy, random_prompts
from seekserve.engine.async_engine import AsyncEngine, EngineInfo
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.errors import EngineDeadError, EngineOverloadedError, ModelLoadError, PromptTooLongError
from seekserve.layers.cpu_kernels import kernel_status

PROMPTS = random_prompts(6, seed=3)


def make_engine(model_dir: Path, **options: object) -> AsyncEngine:
    return AsyncEngine.from_options(
        model=str(model_dir), dtype="float32", num_kv_blocks=64, block_size=4, max_model_len=128, **options
    )


async def collect(engine: AsyncEngine, prompt: list[int], max_tokens: int) -> tuple[list[int], str, str]:
    tokens: list[int] = []
    text = ""
    final = ""
    async for out in engine.generate(prompt, greedy(max_tokens)):
        tokens += out.outputs[0].delta_token_ids
        text += out.outputs[0].delta_text
        final = out.outputs[0].text
    return tokens, text, final


def test_info_describes_the_loaded_model(llama_dir: Path) -> None:
    engine = make_engine(llama_dir, max_num_seqs=3, max_queue_len=5)
    assert engine.info == EngineInfo(
        model_name=str(llama_dir),
        model_path=llama_dir,
        architectures=("LlamaForCausalLM",),
        dtype="float32",
        device="cpu",
        cpu_kernels=str(kernel_status()),
        max_model_len=128,
        uses_default_chat_template=engine.info.uses_default_chat_template,
        quantization=None,
        weight_bytes=engine.info.weight_bytes,
        packed_copy_bytes=engine.info.packed_copy_bytes,
        kv_cache_tokens=64 * 4,
        num_kv_blocks=64,
        block_size=4,
        kv_bytes_per_token=engine.info.kv_bytes_per_token,
        max_num_seqs=3,
        max_num_batched_tokens=engine.info.max_num_batched_tokens,
        max_queue_len=5,
    )
    assert engine.info.architecture == "LlamaForCausalLM"
    # float32 weights: 4 bytes per parameter, at least the two 384 x 64 embedding tables
    assert engine.info.weight_bytes >= 2 * 384 * 64 * 4
    # K and V, 2 layers x 2 KV heads x 16 dims, float32
    assert engine.info.kv_bytes_per_token == 2 * 2 * 2 * 16 * 4
    token_ids = engine.encode("hello world")
    assert token_ids and all(isinstance(t, int) for t in token_ids)
    assert engine.tokenizer.decode(token_ids, skip_special_tokens=True) == "hello world"
    engine.shutdown()


def test_concurrent_streams_match_transformers(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)

    async def main() -> list[tuple[list[int], str, str]]:
        return await asyncio.gather(*(collect(engine, p, 10) for p in PROMPTS))

    results = asyncio.run(main())
    assert [r[0] for r in results] == hf_greedy(llama_dir, PROMPTS, 10)
    assert all(text == final for _, text, final in results)
    engine.shutdown()


def test_leaving_a_stream_early_aborts_and_frees_blocks(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)

    async def main() -> None:
        async def partial(prompt: list[int]) -> None:
            async for out in engine.generate(prompt, greedy(100)):
                if len(out.outputs[0].token_ids) >= 3:
                    break

        await asyncio.gather(*(partial(p) for p in PROMPTS[:4]))
        for _ in range(100):
            if engine.stats.num_running == 0 and engine.engine.block_manager.num_free_blocks == 64:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"blocks not freed: {engine.stats}")

    asyncio.run(main())
    engine.shutdown()


def test_bad_request_fails_before_streaming(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)

    async def main() -> None:
        with pytest.raises(PromptTooLongError):
            await engine.add_request(list(range(10, 200)), greedy(4))
        tokens, _, _ = await collect(engine, PROMPTS[0], 4)
        assert len(tokens) == 4

    asyncio.run(main())
    engine.shutdown()


def test_full_queue_rejects_with_overload(llama_dir: Path) -> None:
    engine = make_engine(llama_dir, max_queue_len=2)

    async def main() -> None:
        streams = [await engine.add_request(p, greedy(4)) for p in PROMPTS[:2]]
        with pytest.raises(EngineOverloadedError, match="max_queue_len=2"):
            await engine.add_request(PROMPTS[2], greedy(4))
        for stream in streams:
            async for _ in stream:
                pass

    asyncio.run(main())
    engine.shutdown()


class StepGate:
    """Holds the engine thread at the start of every model call until `release` (or `open`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._entered = threading.Semaphore(0)
        self._allowed = threading.Semaphore(0)
        self._open = False
        execute = engine.engine.runner.execute

        def gated(*args: Any, **kwargs: Any) -> Any:
            if not self._open:
                self._entered.release()
                self._allowed.acquire()
            return execute(*args, **kwargs)

        engine.engine.runner.execute = gated  # type: ignore[method-assign]

    async def entered(self) -> None:
        """Wait until the engine thread is held inside a step."""
        assert await asyncio.to_thread(self._entered.acquire, timeout=30), "the engine never stepped"

    def release(self) -> None:
        self._allowed.release()

    def open(self) -> None:
        self._open = True
        self._allowed.release()


async def drain(streams: list[AsyncIterator[RequestOutput]]) -> None:
    for stream in streams:
        async for _ in stream:
            pass


async def fill_queue(engine: AsyncEngine, prompts: list[list[int]]) -> list[AsyncIterator[RequestOutput]]:
    """Add requests until the engine refuses one; returns the streams of those it took."""
    streams = []
    for prompt in prompts:
        try:
            streams.append(await engine.add_request(prompt, greedy(2)))
        except EngineOverloadedError:
            return streams
    raise AssertionError(f"all {len(prompts)} requests were admitted")


def test_the_pending_count_returns_to_zero_after_adds_finishes_and_aborts(llama_dir: Path) -> None:
    engine = make_engine(llama_dir, max_num_seqs=4, max_queue_len=6)
    prompts = random_prompts(150, [4 + i % 40 for i in range(150)], seed=5)
    outcomes: list[str] = []

    async def one(i: int) -> None:
        params = SamplingParams(n=1 + i % 2, temperature=0.8, seed=i, max_tokens=1 + i % 5, ignore_eos=True)
        try:
            stream = await engine.add_request(prompts[i], params, f"r{i}")
        except EngineOverloadedError:
            outcomes.append("refused")
            return
        if i % 3 == 0:
            await drain([stream])
            outcomes.append("finished")
        elif i % 3 == 1:
            async for _ in stream:
                break  # leaving the stream aborts the request
            outcomes.append("aborted")
        else:
            engine.abort(f"r{i}")  # queued behind its add: the engine may not have seen it yet
            await drain([stream])
            outcomes.append("aborted")

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(len(prompts))))
        for _ in range(200):
            if engine.stats.num_waiting == engine.stats.num_running == 0:
                break
            await asyncio.sleep(0.02)
        assert engine.num_pending == 0 and engine.stats.num_waiting == engine.stats.num_running == 0
        assert {"refused", "finished", "aborted"} <= set(outcomes), outcomes
        # the limit admits exactly max_queue_len again: nothing leaked into the count
        gate = StepGate(engine)
        busy = await engine.add_request(PROMPTS[0], greedy(8))
        await gate.entered()
        gate.release()
        await gate.entered()  # `busy` decodes; nothing waits
        queued = await fill_queue(engine, prompts)
        assert len(queued) == 6 and engine.num_pending == 6
        gate.open()
        await drain([busy, *queued])

    asyncio.run(main())
    engine.shutdown()


def test_a_request_taken_in_during_a_step_is_counted_and_an_accepted_one_is_never_refused(
    llama_dir: Path,
) -> None:
    """One running, one slot in the queue. `first` is taken in while a step is held: it waits, but
    the stats of the last step do not show it yet. The next request must be refused at once (not
    accepted, then failed by the engine thread after its stream began), and every accepted one runs."""
    engine = make_engine(llama_dir, max_num_seqs=1, max_queue_len=1)
    gate = StepGate(engine)

    async def main() -> None:
        running = await engine.add_request(PROMPTS[0], greedy(6))
        await gate.entered()  # its prefill
        gate.release()
        await gate.entered()  # its first decode: the stats say nothing waits
        first = await engine.add_request(PROMPTS[1], greedy(2))
        gate.release()
        await gate.entered()  # `first` was taken in before this step, and waits
        assert engine.stats.num_waiting == 0 and engine.num_pending == 0
        with pytest.raises(EngineOverloadedError, match="max_queue_len=1"):
            await engine.add_request(PROMPTS[2], greedy(2))
        gate.open()
        await drain([running, first])

    asyncio.run(main())
    engine.shutdown()


def test_engine_death_reaches_every_stream_and_health(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated device failure")

    engine.engine.runner.execute = broken  # type: ignore[method-assign]

    async def main() -> None:
        engine.start()
        assert engine.is_healthy
        with pytest.raises(EngineDeadError, match="simulated device failure"):
            await collect(engine, PROMPTS[0], 4)
        assert not engine.is_healthy
        with pytest.raises(EngineDeadError):
            await engine.add_request(PROMPTS[1], greedy(4))

    asyncio.run(main())


def test_a_request_tokenized_while_the_engine_dies_gets_the_error(llama_dir: Path) -> None:
    """The prompt of `late` is being tokenized when a step raises: its stream did not exist when the
    error went out to every stream, so it must be refused rather than wait for ever."""
    engine = make_engine(llama_dir, max_num_seqs=1)
    tokenizing, release = threading.Event(), threading.Event()
    encode = engine.engine.encode

    def slow_encode(prompt: str) -> list[int]:
        tokenizing.set()
        release.wait(10)
        return encode(prompt)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated device failure")

    engine.engine.encode = slow_encode  # type: ignore[method-assign]

    async def main() -> None:
        engine.start()
        late = asyncio.create_task(collect_text(engine, "a prompt that arrives late"))
        await asyncio.to_thread(tokenizing.wait, 10)
        running = asyncio.create_task(collect(engine, PROMPTS[0], 4))
        queued = asyncio.create_task(collect(engine, PROMPTS[1], 4))
        engine.engine.runner.execute = broken  # type: ignore[method-assign]
        async with asyncio.timeout(10):
            died = await engine.wait_dead()
            release.set()
            results = await asyncio.gather(running, queued, late, return_exceptions=True)
        assert "simulated device failure" in str(died)
        assert [type(r) for r in results] == [EngineDeadError] * 3
        assert not engine.is_healthy

    asyncio.run(main())


async def collect_text(engine: AsyncEngine, prompt: str) -> None:
    async for _ in engine.generate(prompt, greedy(4)):
        pass


def test_the_kv_audit_runs_when_the_engine_falls_idle(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)

    async def main() -> None:
        await collect(engine, PROMPTS[0], 4)
        await asyncio.sleep(0.1)  # the engine thread audits on its way to sleep
        assert engine.stats.num_kv_audit_failures == 0
        assert (engine.stats.num_kv_blocks_used, engine.stats.num_kv_block_refs) == (0, 0)
        engine.engine.block_manager.num_refs += 1  # a reference nobody holds: a leak
        await collect(engine, PROMPTS[1], 4)
        await asyncio.sleep(0.1)
        assert engine.stats.num_kv_audit_failures == 1

    asyncio.run(main())
    engine.shutdown()


def test_engine_is_built_and_stepped_on_one_thread(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenMP keeps a worker team per thread that ran a parallel region; building on the stepping
    # thread keeps the loader's team from slowing every step (see the module's docstring).
    from seekserve.engine import llm_engine

    threads: dict[str, set[int]] = {"init": set(), "step": set()}
    init, step = llm_engine.LLMEngine.__init__, llm_engine.LLMEngine.step

    def record_init(self: llm_engine.LLMEngine, *args: object, **kwargs: object) -> None:
        threads["init"].add(threading.get_ident())
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    def record_step(self: llm_engine.LLMEngine) -> list[object]:
        threads["step"].add(threading.get_ident())
        return step(self)  # type: ignore[return-value]

    monkeypatch.setattr(llm_engine.LLMEngine, "__init__", record_init)
    monkeypatch.setattr(llm_engine.LLMEngine, "step", record_step)
    engine = make_engine(llama_dir)
    assert not engine.is_healthy  # built, not started
    tokens, _, _ = asyncio.run(collect(engine, PROMPTS[0], 4))
    engine.shutdown()
    assert tokens == hf_greedy(llama_dir, PROMPTS[:1], 4)[0]
    assert threads["init"] == threads["step"] and threading.get_ident() not in threads["step"]


def test_an_engine_dropped_before_start_lets_its_thread_go(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    thread = engine._thread
    assert thread is not None and thread.is_alive()
    del engine
    gc.collect()
    thread.join(5.0)
    assert not thread.is_alive()


def test_a_failed_build_raises_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        AsyncEngine.from_options(model=str(tmp_path / "missing"))
