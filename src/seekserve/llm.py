"""`LLM`: offline batch generation, in the form users know from vLLM."""

from __future__ import annotations

import itertools
import typing
from collections.abc import Sequence
from typing import Any

from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams

__all__ = ["LLM"]

Prompt = str | list[int]
Message = dict[str, Any]


class LLM:
    """Load a model once, then generate for batches of prompts.

        llm = LLM(model="/models/DeepSeek-R1-Distill-Qwen-1.5B", max_model_len=4096)
        out = llm.generate(["Hello"], SamplingParams(temperature=0, max_tokens=32))
        print(out[0].outputs[0].text)

    `model` is a Hugging Face directory, a GGUF file, a hub id (org/name), or None for the default
    model (Gemma 3 270M). Engine options (`dtype`, `device`, `max_num_seqs`, `block_size`, ...) are
    those of `EngineConfig`; an unknown option is an error.
    """

    def __init__(self, model: str | None = None, **engine_options: Any) -> None:
        self.engine = LLMEngine.from_options(model=model, **engine_options)
        self._ids = itertools.count()

    def get_tokenizer(self) -> Any:
        return self.engine.tokenizer

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Generate for every prompt (text or token ids) together; results come in input order."""
        batch = _as_prompt_list(prompts)
        params = _as_params_list(sampling_params, len(batch))
        ids = [f"llm-{next(self._ids)}" for _ in batch]
        try:
            for request_id, prompt, p in zip(ids, batch, params, strict=True):
                self.engine.add_request(request_id, prompt, p)
        except BaseException:
            for request_id in ids:
                self.engine.abort(request_id)
            raise
        done: dict[str, RequestOutput] = {}
        while len(done) < len(ids):
            for out in self.engine.step():
                if out.finished:
                    done[out.request_id] = out
        return [done[i] for i in ids]

    def chat(
        self,
        messages: list[Message] | Sequence[list[Message]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
    ) -> list[RequestOutput]:
        """Generate replies to one conversation or a batch of them, with the model's chat template."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        tokenizer = self.engine.tokenizer
        prompts: list[Prompt] = [
            list(
                tokenizer.apply_chat_template(
                    conv,
                    chat_template=chat_template,
                    add_generation_prompt=add_generation_prompt,
                    tokenize=True,
                    return_dict=False,
                )
            )
            for conv in conversations
        ]
        return self.generate(prompts, sampling_params)


def _as_prompt_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    items = list(prompts)
    if items and all(isinstance(t, int) for t in items):
        return [typing.cast(list[int], items)]  # one prompt given as token ids
    return typing.cast(list[Prompt], items)


def _as_params_list(params: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
    if params is None:
        return [SamplingParams()] * n
    if isinstance(params, SamplingParams):
        return [params] * n
    result = list(params)
    if len(result) != n:
        raise ValueError(f"got {len(result)} sampling params for {n} prompts: give one, or one per prompt")
    return result
