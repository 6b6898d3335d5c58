"""Chat templates from a model's files are rendered in a sandbox: one that reaches for Python internals
is refused at load time with a clear error, and nothing it asked for runs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from factories import llama_config, make_model_dir, make_tokenizer
from gguf_factories import Q, Storage, write_gguf
from seekserve import LLM
from seekserve.errors import ModelLoadError
from seekserve.models.chat_template import DEFAULT_CHAT_TEMPLATE, check_chat_template

TINY = dict(dtype="float32", max_model_len=32, block_size=8, num_kv_blocks=8)

# Each tries a known way out of a Jinja template to Python objects; the sandbox raises on every one.
ESCAPES = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "global-init": "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "function-globals": "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "helper-builtins": "{{ raise_exception.__globals__['__builtins__']['open']('{marker}', 'w') }}",
    "item-syntax": "{{ ''['__class__']['__mro__'] }}",
    "str-format": "{{ '{0.__class__.__base__}'.format(messages) }}",
    "template-self": "{{ self.__init__.__globals__ }}",
    "loop-object": "{% for m in messages %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
    "mutate-messages": "{% set _ = messages.append({'role': 'system', 'content': 'injected'}) %}x",
    "mutate-message": "{% set _ = messages[0].update({'content': 'injected'}) %}x",
}
# These reach for nothing: attribute lookups the sandbox answers with an empty value.
QUIETLY_EMPTY = {
    "class-alone": "{{ ''.__class__ }}",
    "attr-filter": "{{ messages|attr('__class__')|attr('__mro__') }}",
    "format-map": "{{ '{x.__class__}'.format_map({'x': messages}) }}",
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tokenizer(tmp_path_factory.mktemp("template-tokenizer"))


@pytest.mark.parametrize("name", ESCAPES)
def test_a_template_reaching_for_python_internals_is_refused(
    tokenizer: Any, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "escaped"
    tokenizer.chat_template = ESCAPES[name].replace("{marker}", str(marker))
    with pytest.raises(ModelLoadError, match=r"the chat template of model-x reaches for Python internals"):
        check_chat_template(tokenizer, "model-x")
    assert not marker.exists(), "the template ran code outside the sandbox"


@pytest.mark.parametrize("name", QUIETLY_EMPTY)
def test_a_template_that_only_names_internals_gets_nothing(tokenizer: Any, name: str) -> None:
    tokenizer.chat_template = QUIETLY_EMPTY[name]
    check_chat_template(tokenizer, "model-x")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert rendered == ""


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ messages[0]['content'] + 1 }}", "TypeError"),
        ("{% for %}", "TemplateSyntaxError"),
        ("{{ raise_exception('only system messages') }}", "TemplateError"),
        ("{% for i in range(10**9) %}{% endfor %}", "OverflowError"),
    ],
)
def test_a_template_that_fails_is_loaded_with_a_warning(
    tokenizer: Any, caplog: pytest.LogCaptureFixture, template: str, error: str
) -> None:
    tokenizer.chat_template = template
    with caplog.at_level(logging.WARNING, logger="seekserve.models.chat_template"):
        check_chat_template(tokenizer, "model-x")
    (record,) = caplog.records
    assert (
        f"the chat template of model-x fails on a one-message conversation ({error}:" in record.getMessage()
    )


@pytest.mark.parametrize("template", [DEFAULT_CHAT_TEMPLATE, "{{ bos_token }}{{ messages[0]['content'] }}"])
def test_ordinary_templates_pass(tokenizer: Any, caplog: pytest.LogCaptureFixture, template: str) -> None:
    tokenizer.chat_template = template
    with caplog.at_level(logging.WARNING):
        check_chat_template(tokenizer, "model-x")
    assert not caplog.records


def test_a_model_directory_with_an_escaping_template_does_not_load(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(llama_dir, model_dir)
    (model_dir / "chat_template.jinja").write_text(ESCAPES["subclasses"])
    with pytest.raises(
        ModelLoadError, match=rf"the chat template of {model_dir} reaches for Python internals"
    ):
        LLM(str(model_dir), **TINY)


def test_a_gguf_file_whose_metadata_template_escapes_does_not_load(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "hf", llama_config(num_hidden_layers=1))
    marker = tmp_path / "escaped"
    (model_dir / "chat_template.jinja").write_text(ESCAPES["global-init"].replace("{marker}", str(marker)))
    path = tmp_path / "model.gguf"
    write_gguf(path, model_dir, "llama", Storage(Q.F32))
    with pytest.raises(ModelLoadError, match=rf"the chat template of {path} reaches for Python internals"):
        LLM(str(path), **TINY)
    assert not marker.exists()
