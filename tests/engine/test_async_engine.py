from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from factories import greedy, hf_greedy, random_prompts
from seekserve.engine.async_engine import AsyncEngine
from seekserve.errors import EngineDeadError, EngineOverloadedError, PromptTooLongError

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
