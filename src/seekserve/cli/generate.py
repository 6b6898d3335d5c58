"""`seekserve generate`: complete one prompt and print the text."""

from __future__ import annotations

import sys
from typing import Any

import click

from seekserve.cli.options import engine_options, pop_engine_options
from seekserve.errors import SeekserveError


@click.command()
@click.option(
    "--model",
    "model",
    default=None,
    help="Hugging Face directory, GGUF file, or hub id (org/name[:TAG]); default: Gemma 3 270M.",
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=64, show_default=True, help="Most tokens to generate."
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Sampling temperature; 0 is greedy.",
)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 disables.")
@click.option("--chat", is_flag=True, help="Wrap the prompt as a user message in the model's chat template.")
@engine_options
@click.argument("prompt")
def generate(
    prompt: str,
    model: str | None,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    chat: bool,
    **kwargs: Any,
) -> None:
    """Complete PROMPT with the model and print the generated text."""
    from seekserve.engine.sampling_params import SamplingParams
    from seekserve.llm import LLM

    options = pop_engine_options(kwargs)
    try:
        llm = LLM(model, **options)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
        if chat:
            out = llm.chat([{"role": "user", "content": prompt}], params)
        else:
            out = llm.generate(prompt, params)
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    sys.stdout.write(out[0].outputs[0].text + "\n")
