"""Command-line options derived from the engine's config dataclasses (their defaults and docstrings)."""

from __future__ import annotations

import ast
import inspect
import itertools
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING, Field, fields
from functools import cache
from typing import Any, get_args, get_origin

import click

from seekserve.engine.config import SUBCONFIGS, EngineConfig

__all__ = [
    "config_options",
    "dataclass_option",
    "engine_options",
    "field_docs",
    "pop_engine_options",
    "pop_search_config",
    "search_options",
]

_SKIP = {"model"}


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass, by field name (the string under each field)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def dataclass_option(cls: type, name: str, *decls: str, **kwargs: Any) -> Any:
    """A click option for field `name` of dataclass `cls`: its docstring as help, its default as
    default (shown when set); `decls` default to --name-with-dashes, `kwargs` go to click.option."""
    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    decls = decls or ("--" + name.replace("_", "-"),)
    kwargs.setdefault("default", defaults.get(name))
    kwargs.setdefault("show_default", kwargs["default"] is not None)
    return click.option(*decls, name, help=field_docs(cls)[name], **kwargs)


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is_flag) for a field's resolved annotation."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in get_args(annotation)]), False
    if args and get_origin(annotation) is not typing.Literal:
        return _click_type(args[0])
    if annotation is bool:
        return None, True
    return {int: click.INT, float: click.FLOAT, str: click.STRING}[annotation], False


def config_options(
    classes: Iterable[type], skip: Collection[str] = (), envvars: Mapping[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add one option per field of the config dataclasses (except `skip`) to a click command.

    Flags are the field names with dashes; types, defaults and help come from the fields and
    their docstrings. `envvars` maps field names to environment variables that may set them.
    """
    envvars = envvars or {}

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for cls in reversed(list(classes)):
            hints = typing.get_type_hints(cls)
            docs = field_docs(cls)
            for f in reversed(fields(cls)):
                if f.name not in skip:
                    func = _field_option(f, hints[f.name], docs.get(f.name, ""), envvars.get(f.name))(func)
        return func

    return decorate


def _field_option(f: Field[Any], annotation: Any, help_text: str, envvar: str | None) -> Any:
    ctype, is_flag = _click_type(annotation)
    flag = "--" + f.name.replace("_", "-")
    default = None if f.default is MISSING else f.default
    if is_flag:
        return click.option(
            f"{flag}/--no-{flag[2:]}", f.name, default=default, show_default=True, help=help_text
        )
    return click.option(
        flag,
        f.name,
        type=ctype,
        default=default,
        show_default=default is not None,
        help=help_text,
        envvar=envvar,
        show_envvar=envvar is not None,
    )


def engine_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per engine config field (except --model) to a click command."""
    return config_options(SUBCONFIGS.values(), skip=_SKIP)(func)


def pop_engine_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the engine options from a command's kwargs and return them."""
    names = set(EngineConfig.option_owners()) - _SKIP
    return {name: kwargs.pop(name) for name in list(kwargs) if name in names}


_SEARCH_FLAGS = (
    "search_provider",
    "search_dir",
    "searxng_url",
    "search_allow_hosts",
    "search_budget_s",
    "search_cache_ttl_s",
    "search_queries",
    "search_max_queries",
)


def search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the web-search flags (defaults and help from SearchConfig) to a click command; read them
    back with pop_search_config."""
    from seekserve.search.config import ProviderKind, QueryMode, SearchConfig

    docs = field_docs(SearchConfig)
    defaults = SearchConfig()
    options = [
        click.option(
            "--search-provider",
            type=click.Choice([k.value for k in ProviderKind]),
            default=defaults.provider.value,
            show_default=True,
            help=docs["provider"],
        ),
        click.option("--search-dir", type=click.Path(file_okay=False), default=None, help=docs["search_dir"]),
        click.option("--searxng-url", default=None, help=docs["searxng_url"]),
        click.option(
            "--search-allow-hosts",
            default="",
            metavar="HOST,...",
            help="Comma-separated. " + docs["allow_hosts"],
        ),
        click.option(
            "--search-budget-s",
            type=click.FLOAT,
            default=defaults.total_budget_s,
            show_default=True,
            help=docs["total_budget_s"],
        ),
        click.option(
            "--search-cache-ttl-s",
            type=click.FLOAT,
            default=defaults.cache_ttl_s,
            show_default=True,
            help=docs["cache_ttl_s"],
        ),
        click.option(
            "--search-queries",
            type=click.Choice([k.value for k in QueryMode]),
            default=defaults.queries.value,
            show_default=True,
            help=docs["queries"],
        ),
        click.option(
            "--search-max-queries",
            type=click.INT,
            default=defaults.max_queries,
            show_default=True,
            help=docs["max_queries"],
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_search_config(kwargs: dict[str, Any]) -> Any:
    """Remove the web-search flags from a command's kwargs; the SearchConfig they make (ConfigError
    when a value is wrong)."""
    from seekserve.search.config import SearchConfig

    values = {name: kwargs.pop(name) for name in _SEARCH_FLAGS}
    hosts = tuple(h.strip() for h in values["search_allow_hosts"].split(",") if h.strip())
    return SearchConfig(
        provider=values["search_provider"],
        search_dir=values["search_dir"],
        searxng_url=values["searxng_url"],
        allow_hosts=hosts,
        total_budget_s=values["search_budget_s"],
        cache_ttl_s=values["search_cache_ttl_s"],
        queries=values["search_queries"],
        max_queries=values["search_max_queries"],
    )
