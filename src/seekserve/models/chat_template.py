"""The chat template for models that ship without one (base models such as the default Gemma 3 270M).

It renders a plain transcript that a base model continues naturally:

    <bos>You are terse.            (a system message, as is)

    User: Hi
    Assistant: Hello!
    User: Why is the sky blue?
    Assistant:

Message content may be a string or OpenAI-style parts ([{"type": "text", "text": ...}]).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CHAT_TEMPLATE", "ensure_chat_template"]

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
