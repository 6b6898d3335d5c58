"""The chat template for models that ship without one (base models such as the default Gemma 3 270M).

It renders a plain transcript that a base model continues naturally:

    <bos>You are terse.            (a system message, as is)

    User: Hi
    Assistant: Hello!
    User: Why is the sky blue?
    Assistant:

Message content may be a string or OpenAI-style parts ([{"type": "text", "text": ...}]).

A model's own template comes from its files (tokenizer_config.json, chat_template.jinja, GGUF
metadata) and is untrusted: transformers renders every template in jinja2's immutable sandbox,
which raises SecurityError when a template reaches for Python internals (`__class__`,
`__globals__`, `str.format` on objects, mutating a list). `check_chat_template` renders it once at
load time, so a template that does so unconditionally is refused before the model serves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jinja2.exceptions import SecurityError, TemplateError

from seekserve.errors import ModelLoadError

__all__ = ["DEFAULT_CHAT_TEMPLATE", "TEMPLATE_FAILURES", "check_chat_template", "ensure_chat_template"]

log = logging.getLogger(__name__)

TEMPLATE_FAILURES = (
    TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
    OverflowError, RecursionError,
)  # fmt: skip
"""What rendering a template may raise: jinja2's errors (SecurityError among them) and the Python
errors of the expressions it evaluates (a string plus a number, a division by zero, a recursive macro)."""
_PROBE = [{"role": "user", "content": "Hi"}]

DEFAULT_CHAT_TEMPLATE = (
    "{%- macro text(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for part in content if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if bos_token -%}{{ bos_token }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ text(message['content']) + '\\n\\n' }}"
    "{%- else -%}{{ message['role'] | capitalize + ': ' + text(message['content']) + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give `tokenizer` the default template if it has none; return whether it now uses the default."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


def check_chat_template(tokenizer: Any, source: Path | str) -> None:
    """Render `tokenizer`'s chat template on a one-message conversation, in transformers' sandbox.

    Raises ModelLoadError when the template reaches for Python internals; logs a warning when it
    fails otherwise (chat requests will then get a 400 naming the template's error).
    """
    try:
        tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
    except SecurityError as e:
        raise ModelLoadError(
            f"the chat template of {source} reaches for Python internals, which the template sandbox "
            f"refuses ({e}): remove that from the template (tokenizer_config.json, chat_template.jinja "
            "or the GGUF metadata) or pass a tokenizer with a safe one"
        ) from e
    except TEMPLATE_FAILURES as e:
        log.warning(
            "the chat template of %s fails on a one-message conversation (%s: %s); "
            "chat requests may be refused",
            source,
            type(e).__name__,
            e,
        )
