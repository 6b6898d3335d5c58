"""The engine loop: add requests, run steps, abort. Synchronous; `AsyncEngine` drives it from a thread.

A request with `n > 1` becomes n sequences (`<id>#0`, `<id>#1`, ...) that share the prompt (and,
with prefix caching, its KV blocks); its outputs are gathered into one `RequestOutput`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from seekserve.engine.block_manager import BlockManager
from seekserve.engine.config import EngineConfig
from seekserve.engine.detokenizer import IncrementalDetokenizer
from seekserve.engine.greedy_head import GreedyHead
from seekserve.engine.model_runner import ModelRunner
from seekserve.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from seekserve.engine.pacer import PrefillPacer
from seekserve.engine.request import FinishReason, Request, RequestStatus
from seekserve.engine.sampler import Sampler, SamplerOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.engine.scheduler import Scheduler, SchedulerOutput
from seekserve.errors import ConfigError, EngineOverloadedError, InvalidRequestError, PromptTooLongError
from seekserve.layers.cpu_kernels import cpu_kernels
from seekserve.layers.modules import prepack_linears
from seekserve.memory import available_memory_bytes
from seekserve.quant.apply import param_bytes

__all__ = ["EngineStats", "LLMEngine"]

log = logging.getLogger(__name__)

_CPU_KV_CACHE_MAX_BYTES = 4 << 30
_DEFAULT_BATCHED_TOKENS = {"cpu": 512, "cuda": 8192}
_FLOAT_SCREEN_ROWS = 24
"""Most rows a step's greedy head screens by default on CPUs without integer dot products."""


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's load, for metrics and health."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float
    num_preemptions: int
    prefix_cache_queries: int
    prefix_cache_hits: int


class _Group:
    """The sequences of one user request (n of them) and their accumulated outputs."""

    def __init__(self, request_id: str, prompt: str | None, prompt_token_ids: list[int], seqs: list[Request]):
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.seqs = seqs
        self.outputs = [CompletionOutput(index=i, text="", token_ids=[]) for i in range(len(seqs))]

    @property
    def finished(self) -> bool:
        return all(s.is_finished for s in self.seqs)

    def snapshot(self) -> RequestOutput:
        """The group's state with this step's deltas; deltas are cleared for the next step."""
        outputs = [replace(o, token_ids=list(o.token_ids)) for o in self.outputs]
        for o in self.outputs:
            o.delta_text, o.delta_token_ids, o.delta_logprobs = "", [], []
        first = self.seqs[0]
        metrics = RequestMetrics(
            arrival_time=first.times.arrival,
            first_scheduled_time=min(
                (s.times.first_scheduled for s in self.seqs if s.times.first_scheduled), default=None
            ),
            first_token_time=min(
                (s.times.first_token for s in self.seqs if s.times.first_token), default=None
            ),
            last_token_time=max((s.times.last_token for s in self.seqs if s.times.last_token), default=None),
            finished_time=max((s.times.finished or 0.0 for s in self.seqs), default=None)
            if self.finished
            else None,
            num_cached_tokens=first.num_cached_tokens,
            num_preemptions=sum(s.num_preemptions for s in self.seqs),
        )
        return RequestOutput(
            self.request_id, self.prompt, self.prompt_token_ids, outputs, self.finished, metrics
        )


class LLMEngine:
    """Owns the model, the KV cache, the scheduler and the sampler; one `step()` runs one batch."""

    def __init__(self, config: EngineConfig) -> None:
        from seekserve.engine.model_loader import load_model

        self.config = config
        self.device = _resolve_device(config.device.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.device.num_threads or len(os.sched_getaffinity(0)))
        loaded = load_model(config.model, self.device)
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.hf_config = loaded.hf_config
        self.max_model_len = loaded.max_model_len
        self.eos_token_ids = loaded.eos_token_ids
        unpacked_bytes = param_bytes(self.model)
        greedy_head = self._greedy_head(config) if self.device.type == "cpu" else None
        if self.device.type == "cpu" and config.device.cpu_prepack_weights:
            # A screened untied head stays plain: the screen rescores its rows (a tied head's plain
            # rows are the embedding's, and the head gets its packed copy as before).
            untied = not getattr(self.hf_config, "tie_word_embeddings", False)
            head = getattr(self.model, "lm_head", None)
            keep = greedy_head is not None and greedy_head.weight is not None and untied
            prepack_linears(self.model, [head] if keep and isinstance(head, nn.Module) else [])
        self.weight_bytes = param_bytes(self.model) + (greedy_head.nbytes if greedy_head else 0)
        """Bytes of weights held, copies kept for speed included."""
        self.packed_copy_bytes = self.weight_bytes - unpacked_bytes
        """Of those, the copies kept for speed: a tied LM head's packed copy, the greedy head's int8
        copy (DeviceConfig.cpu_greedy_head_rows)."""
        self.quantization = loaded.quantization
        """What weight quantization did (seekserve.quant.apply.QuantReport), or None."""
        self.weight_bytes_saved = loaded.quantization.saved_bytes if loaded.quantization else 0
        """Weight bytes quantization saved against the unquantized model (the KV budget gets them)."""
        self.model_source = loaded.source
        self.model_name = loaded.source.name
        self.uses_default_chat_template = loaded.uses_default_chat_template
        spec = self.model.kv_cache_spec()
        cache = config.cache
        self.kv_bytes_per_token = spec.bytes_per_token(self.model.dtype)
        self.num_kv_blocks = cache.num_kv_blocks or self._blocks_from_memory()
        capacity = self.num_kv_blocks * cache.block_size
        if capacity < self.max_model_len:
            raise ConfigError(
                f"the KV cache holds {capacity} tokens ({self.num_kv_blocks} blocks of {cache.block_size}, "
                f"{self.kv_bytes_per_token} bytes per token) but one sequence may need max_model_len="
                f"{self.max_model_len}: give the cache at least "
                f"{self.max_model_len * self.kv_bytes_per_token} bytes (kv_cache_memory_bytes) or "
                f"{-(-self.max_model_len // cache.block_size)} blocks (num_kv_blocks), or lower max_model_len"
            )
        self.kv_cache_tokens = capacity
        kv_caches = spec.allocate(capacity, self.model.dtype, self.device)
        self.block_manager = BlockManager(self.num_kv_blocks, cache.block_size, cache.enable_prefix_caching)
        self.max_num_batched_tokens = self._max_num_batched_tokens()
        self.scheduler = Scheduler(
            config.scheduler, self.block_manager, self.max_num_batched_tokens, self._pacer()
        )
        self.runner = ModelRunner(self.model, kv_caches, cache.block_size, self.device, greedy_head)
        self.sampler = Sampler(config.model.seed, self.runner.kernels)
        self._groups: dict[str, _Group] = {}
        self._detokenizers: dict[Request, IncrementalDetokenizer] = {}
        self._group_of: dict[Request, tuple[_Group, int]] = {}

    @classmethod
    def from_options(cls, **options: Any) -> LLMEngine:
        return cls(EngineConfig.from_options(**options))

    def _greedy_head(self, config: EngineConfig) -> GreedyHead | None:
        """The screened LM head for greedy steps (DeviceConfig.cpu_greedy_head_rows), or None."""
        rows = config.device.cpu_greedy_head_rows
        kernels = cpu_kernels() if rows != 0 else None
        if kernels is None:
            return None
        if rows is None:
            # With integer dot products the screen beats the matmul at every batch size measured
            # (performance.md); the float screen only while it stays memory-bound.
            rows = config.scheduler.max_num_seqs if kernels.has_vnni else _FLOAT_SCREEN_ROWS
        return GreedyHead.build(self.model, kernels, rows)

    def _blocks_from_memory(self) -> int:
        budget = self.config.cache.kv_cache_memory_bytes
        if budget is None:
            budget = _default_kv_budget(self.device, self.config, self.weight_bytes_saved)
        return max(1, budget // (self.kv_bytes_per_token * self.config.cache.block_size))

    def _pacer(self) -> PrefillPacer | None:
        sched = self.config.scheduler
        if sched.max_stall_factor is None or not sched.enable_chunked_prefill:
            return None
        min_chunk = min(sched.min_prefill_chunk, self.max_num_batched_tokens)
        return PrefillPacer(sched.max_stall_factor, min_chunk, self.max_num_batched_tokens)

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
    ) -> None:
        """Queue a request given as text or token ids (`prompt_text`: the text the ids came from).

        Raises InvalidRequestError (or EngineOverloadedError) and changes nothing if it cannot be served.
        """
        if request_id in self._groups:
            raise InvalidRequestError(f"request id {request_id!r} is already in use", param="request_id")
        text = prompt if isinstance(prompt, str) else prompt_text
        token_ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.validate(token_ids, params)
        limit = self.config.scheduler.max_queue_len
        if limit is not None and len(self.scheduler.waiting) + params.n > limit:
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
        group = _Group(request_id, text, token_ids, seqs)
        self._groups[request_id] = group
        for index, seq in enumerate(seqs):
            self._group_of[seq] = (group, index)
            self._detokenizers[seq] = IncrementalDetokenizer(self.tokenizer, seq)
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
        group = self._groups.get(request_id)
        if group is None:
            return None
        for seq in group.seqs:
            if not seq.is_finished:
                self._finish(seq, FinishReason.ABORT)
        return self._retire(group)

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
        )

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
        sampling = [s.request for s in batch.scheduled if s.samples]
        step = self.runner.execute(batch, greedy=not self.sampler.needs_logits(sampling))
        for sched in batch.scheduled:
            sched.request.num_computed_tokens += sched.num_new_tokens
            self.block_manager.cache_full_blocks(sched.request)
        touched: dict[str, _Group] = {}
        if sampling:
            if step.token_ids is not None:
                result = SamplerOutput(step.token_ids.tolist(), [None] * len(sampling))
            else:
                assert step.logits is not None, "sampling requests but the runner returned no logits"
                result = self.sampler(step.logits, sampling)
            now = time.monotonic()
            for seq, token_id, logprob in zip(sampling, result.token_ids, result.logprobs, strict=True):
                group = self._group_of[seq][0]
                self._append_token(seq, token_id, logprob, now)
                touched[group.request_id] = group
        self._observe(batch, started)
        return [self._retire(g) if g.finished else g.snapshot() for g in touched.values()]

    def _observe(self, batch: SchedulerOutput, started: float) -> None:
        """Feed the pacer this step's duration (taken after sampling, which waits for the device)."""
        if self.scheduler.pacer is not None:
            prefill_tokens = batch.num_batched_tokens - len(batch.decodes)
            self.scheduler.pacer.observe(len(batch.decodes), prefill_tokens, time.perf_counter() - started)

    def _append_token(self, seq: Request, token_id: int, logprob: Any, now: float) -> None:
        seq.token_ids.append(token_id)
        if seq.times.first_token is None:
            seq.times.first_token = now
        seq.times.last_token = now
        if logprob is not None:
            seq.logprobs.append(logprob)
        params = seq.params
        detok = self._detokenizers[seq]
        group, index = self._group_of[seq]
        output = group.outputs[index]
        finish: FinishReason | None = None
        if token_id in seq.stop_token_ids and seq.num_output_tokens > params.min_tokens - 1:
            finish = FinishReason.STOP
            seq.stop_reason = token_id if token_id in params.stop_token_ids else None
        else:
            detok.add_tokens([token_id])
            if detok.stop_string is not None:
                finish = FinishReason.STOP
                seq.stop_reason = detok.stop_string
        if finish is None and (
            (params.max_tokens is not None and seq.num_output_tokens >= params.max_tokens)
            or seq.num_tokens >= self.max_model_len
        ):
            finish = FinishReason.LENGTH
        output.token_ids.append(token_id)
        output.delta_token_ids.append(token_id)
        if logprob is not None:
            output.delta_logprobs.append(logprob)
            output.logprobs = seq.logprobs
        if finish is not None:
            self._finish(seq, finish)
        output.delta_text += detok.take_delta(finished=seq.is_finished)
        output.text = detok.sent_text

    def _finish(self, seq: Request, reason: FinishReason) -> None:
        self.scheduler.remove(seq)
        seq.status = RequestStatus.FINISHED
        seq.finish_reason = reason
        seq.times.finished = time.monotonic()
        group, index = self._group_of[seq]
        output = group.outputs[index]
        output.finish_reason = reason.value
        output.stop_reason = seq.stop_reason

    def _retire(self, group: _Group) -> RequestOutput:
        out = group.snapshot()
        del self._groups[group.request_id]
        for seq in group.seqs:
            self._group_of.pop(seq, None)
            self._detokenizers.pop(seq, None)
        return out


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} was asked for but no CUDA device is present: use device='cpu'")
    return device


def _default_kv_budget(device: torch.device, config: EngineConfig, weight_bytes_saved: int = 0) -> int:
    """KV cache bytes when none are given: what the device can spare after the weights.

    Measured after loading, so memory that quantization saved is free to take. On CPU the budget is
    a share of the available memory, capped at 4 GiB plus what quantization saved: the engine's
    weights and cache together stay within the footprint the unquantized model would have had.
    """
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        allowed = int(total * config.device.gpu_memory_utilization) - (total - free)
        return max(0, int(allowed * 0.9))  # keep a tenth of it for activations
    share = int(available_memory_bytes() * config.device.cpu_kv_cache_fraction)
    return min(_CPU_KV_CACHE_MAX_BYTES + max(0, weight_bytes_saved), share)
