"""The engine loop: add requests, run steps, abort. Synchronous; `AsyncEngine` drives it from a thread.

`LLMEngine` wires the parts: the scheduler picks each step's batch, the model runner (which owns
the model, its weights and the KV cache) runs it and samples, and the output processor turns the
tokens into text, stops and `RequestOutput`s.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from seekserve.engine.block_manager import BlockManager
from seekserve.engine.config import EngineConfig
from seekserve.engine.model_runner import ModelRunner
from seekserve.engine.output_processor import OutputProcessor, RequestGroup
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.pacer import PrefillPacer
from seekserve.engine.request import Request
from seekserve.engine.sampling_params import SamplingParams
from seekserve.engine.scheduler import Scheduler, SchedulerOutput
from seekserve.errors import ConfigError, EngineOverloadedError, InvalidRequestError, PromptTooLongError
from seekserve.models.base import CausalLM

__all__ = ["EngineStats", "LLMEngine"]

log = logging.getLogger(__name__)


_DEFAULT_BATCHED_TOKENS = {"cpu": 512, "cuda": 8192}


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's load, for metrics and health."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float
    num_preemptions: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    num_kv_blocks_used: int = 0
    """KV blocks referenced by some request (0 whenever nothing runs or waits)."""
    num_kv_block_refs: int = 0
    """References to KV blocks held by requests in all (shared prefix blocks count once per holder)."""
    num_kv_blocks_cached: int = 0
    """KV blocks the prefix cache can hand out again, in use or free."""
    num_kv_audit_failures: int = 0
    """Audits of the KV cache's reference counts that found them out of balance (`LLMEngine.audit`)."""


class LLMEngine:
    """Wires the scheduler, the model runner and the output processor; one `step()` runs one batch."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = _resolve_device(config.device.device)
        self.runner = ModelRunner(config, self.device)
        loaded = self.runner.loaded
        self.tokenizer = loaded.tokenizer
        self.hf_config = loaded.hf_config
        self.max_model_len = loaded.max_model_len
        self.eos_token_ids = loaded.eos_token_ids
        self.quantization = loaded.quantization
        """What weight quantization did (seekserve.quant.apply.QuantReport), or None."""
        self.weight_bytes_saved = loaded.quantization.saved_bytes if loaded.quantization else 0
        """Weight bytes quantization saved against the unquantized model (the KV budget gets them)."""
        self.model_source = loaded.source
        self.model_name = loaded.source.name
        self.uses_default_chat_template = loaded.uses_default_chat_template
        self.weight_bytes = self.runner.weight_bytes
        """Bytes of weights held, copies kept for speed included (see ModelRunner)."""
        self.packed_copy_bytes = self.runner.packed_copy_bytes
        kv = self.runner.kv_cache
        self.kv_bytes_per_token = kv.bytes_per_token
        self.num_kv_blocks = kv.num_blocks
        self.kv_cache_tokens = kv.num_tokens
        self.block_manager = BlockManager(kv.num_blocks, kv.block_size, config.cache.enable_prefix_caching)
        self.max_num_batched_tokens = self._max_num_batched_tokens()
        self.scheduler = Scheduler(
            config.scheduler, self.block_manager, self.max_num_batched_tokens, self._pacer()
        )
        self.outputs = OutputProcessor(self.tokenizer, self.max_model_len, self.scheduler.remove)
        self.num_kv_audit_failures = 0

    @property
    def model(self) -> CausalLM:
        return self.runner.model

    @classmethod
    def from_options(cls, **options: Any) -> LLMEngine:
        return cls(EngineConfig.from_options(**options))

    def _pacer(self) -> PrefillPacer | None:
        sched = self.config.scheduler
        if sched.max_stall_factor is None or not sched.enable_chunked_prefill:
            return None
        min_chunk = min(sched.min_prefill_chunk, self.max_num_batched_tokens)
        return PrefillPacer(
            sched.max_stall_factor, min_chunk, self.max_num_batched_tokens, sched.prefill_spread_steps
        )

    def _max_num_batched_tokens(self) -> int:
        sched = self.config.scheduler
        tokens = sched.max_num_batched_tokens or max(
            _DEFAULT_BATCHED_TOKENS.get(self.device.type, 2048), sched.max_num_seqs
        )
        if not sched.enable_chunked_prefill:
            tokens = max(tokens, self.max_model_len)
        return tokens

    def encode(self, prompt: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(prompt)
        return ids

    def add_request(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        arrival_time: float | None = None,
        prompt_text: str | None = None,
        admitted: bool = False,
    ) -> None:
        """Queue a request given as text or token ids (`prompt_text`: the text the ids came from).

        Raises InvalidRequestError (or EngineOverloadedError) and changes nothing if it cannot be served.
        `admitted`: the caller has already checked it against `max_queue_len` (AsyncEngine does, when
        it accepts the request), so a full queue does not refuse it here.
        """
        if request_id in self.outputs.groups:
            raise InvalidRequestError(f"request id {request_id!r} is already in use", param="request_id")
        text = prompt if isinstance(prompt, str) else prompt_text
        token_ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.validate(token_ids, params)
        limit = self.config.scheduler.max_queue_len
        if not admitted and limit is not None and len(self.scheduler.waiting) + params.n > limit:
            raise EngineOverloadedError(len(self.scheduler.waiting), limit)
        seqs = []
        for i in range(params.n):
            seq_params = params
            if params.n > 1:
                seq_params = replace(params, n=1, seed=None if params.seed is None else params.seed + i)
            seq_id = request_id if params.n == 1 else f"{request_id}#{i}"
            seq = Request(seq_id, token_ids, seq_params, self.eos_token_ids, prompt=text)
            if arrival_time is not None:
                seq.times.arrival = arrival_time
            seqs.append(seq)
        self.outputs.add(RequestGroup(request_id, text, token_ids, seqs))
        for seq in seqs:
            self.scheduler.add(seq)

    def validate(self, token_ids: list[int], params: SamplingParams) -> None:
        """Raise InvalidRequestError if the prompt cannot be served; reads only immutable state."""
        if not token_ids:
            raise InvalidRequestError("the prompt is empty: give at least one token", param="prompt")
        vocab = self.model.config.vocab_size
        bad = next((t for t in token_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"prompt token id {bad} is outside the vocabulary [0, {vocab})", param="prompt"
            )
        if len(token_ids) >= self.max_model_len:
            raise PromptTooLongError(len(token_ids), self.max_model_len)

    def abort(self, request_id: str) -> RequestOutput | None:
        """Stop a request now and free its blocks; returns its final output, or None if unknown."""
        return self.outputs.abort(request_id)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.num_unfinished > 0

    def stats(self) -> EngineStats:
        bm = self.block_manager
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=bm.usage,
            num_preemptions=self.scheduler.num_preemptions,
            prefix_cache_queries=bm.prefix_cache_queries,
            prefix_cache_hits=bm.prefix_cache_hits,
            num_kv_blocks_used=bm.num_used_blocks,
            num_kv_block_refs=bm.num_refs,
            num_kv_blocks_cached=bm.num_cached_blocks,
            num_kv_audit_failures=self.num_kv_audit_failures,
        )

    def audit(self) -> list[str]:
        """Check the KV cache's reference counts against the requests in flight; [] when they balance.

        A failed audit is logged and counted (`num_kv_audit_failures`); serving goes on.
        """
        problems = self.block_manager.audit([*self.scheduler.running, *self.scheduler.waiting])
        if problems:
            self.num_kv_audit_failures += 1
            log.error("the KV cache's reference counts are out of balance: %s", "; ".join(problems[:10]))
        return problems

    def step(self) -> list[RequestOutput]:
        """Run one batch; returns an output for every request that produced tokens or finished."""
        batch = self.scheduler.schedule()
        if batch.is_empty:
            return []
        now = time.monotonic()
        for sched in batch.scheduled:
            if sched.request.times.first_scheduled is None:
                sched.request.times.first_scheduled = now
        started = time.perf_counter()
        sampled = [s.request for s in batch.scheduled if s.samples]  # before the counts move below
        result = self.runner.execute(batch, sampled)
        for sched in batch.scheduled:
            sched.request.num_computed_tokens += sched.num_new_tokens
            self.block_manager.cache_full_blocks(sched.request)
        touched: dict[str, RequestGroup] = {}
        now = time.monotonic()
        for seq, token_id, logprob in zip(sampled, result.token_ids, result.logprobs, strict=True):
            self.outputs.append_token(seq, token_id, logprob, now)
            group = self.outputs.group_of(seq)
            touched[group.request_id] = group
        self._observe(batch, started)
        return [self.outputs.output(g) for g in touched.values()]

    def _observe(self, batch: SchedulerOutput, started: float) -> None:
        """Feed the pacer this step's duration (taken after sampling, which waits for the device)."""
        if self.scheduler.pacer is not None:
            prefill_tokens = batch.num_batched_tokens - len(batch.decodes)
            self.scheduler.pacer.observe(len(batch.decodes), prefill_tokens, time.perf_counter() - started)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} was asked for but no CUDA device is present: use device='cpu'")
    return device
