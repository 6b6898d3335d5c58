"""The one exception hierarchy of seekserve.

    SeekserveError
     ├── ConfigError (ValueError)            a configuration value is out of range
     ├── InvalidRequestError (ValueError)    a request cannot be served as given
     │    ├── PromptTooLongError             its prompt does not fit the context
     │    ├── ModelNotFoundError             it names a model that is not served here
     │    └── RequestTooLargeError           its body is over the size limit
     ├── ModelLoadError                      a model directory or file cannot be loaded
     │    └── UnsupportedModelError          its architecture is not one seekserve runs
     ├── AuthenticationError                 the API key is missing or wrong
     ├── EngineOverloadedError               the waiting queue is full; retry later
     ├── EngineNotReadyError                 the model is still loading; retry later
     ├── RequestAbortedError                 the request was aborted before it finished
     │    └── RequestTimeoutError            it ran past its time limit
     ├── EngineDeadError                     the engine loop died; nothing more is served
     ├── BenchError                          a load-generator run cannot go on (server unreachable)
     ├── PullError                           a model's files cannot be fetched from the hub or a mirror
     │    └── ChecksumError                  a fetched file does not match its SHA-256, again and again
     └── HostFixError                        `seekserve doctor --fix` cannot apply a fix (no root, read-only)

Messages name the value, the limit and the fix. HTTP statuses and OpenAI-style error bodies
are attached at the server's edge, never here.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BenchError",
    "ChecksumError",
    "ConfigError",
    "EngineDeadError",
    "EngineNotReadyError",
    "EngineOverloadedError",
    "HostFixError",
    "InvalidRequestError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PromptTooLongError",
    "PullError",
    "RequestAbortedError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "SeekserveError",
    "UnsupportedModelError",
]


class SeekserveError(Exception):
    """Base class of every error seekserve raises on purpose."""


class ConfigError(SeekserveError, ValueError):
    """A configuration value is invalid; the message gives the value, the limit and the fix."""


class InvalidRequestError(SeekserveError, ValueError):
    """A request (prompt or sampling parameters) cannot be served as given.

    `param` names the offending field where there is one, for OpenAI-style error bodies.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class PromptTooLongError(InvalidRequestError):
    """The prompt does not fit in the model's context window."""

    def __init__(self, num_prompt_tokens: int, max_model_len: int, param: str = "messages") -> None:
        super().__init__(
            f"the prompt has {num_prompt_tokens} tokens but the context holds {max_model_len} "
            f"(max_model_len), and at least one token must be left to generate: shorten the prompt "
            f"to at most {max_model_len - 1} tokens or start the engine with a larger max_model_len",
            param=param,
        )
        self.num_prompt_tokens = num_prompt_tokens
        self.max_model_len = max_model_len


class ModelNotFoundError(InvalidRequestError):
    """The request names a model that this server does not serve."""

    def __init__(self, requested: str, served: list[str]) -> None:
        super().__init__(
            f"the model {requested!r} does not exist here: this server serves {', '.join(map(repr, served))} "
            f"(GET /v1/models lists them)",
            param="model",
        )


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the server accepts."""

    def __init__(self, max_body_bytes: int, num_bytes: int | None = None) -> None:
        size = "" if num_bytes is None else f" of {num_bytes} bytes"
        super().__init__(
            f"the request body{size} is over the limit of {max_body_bytes} bytes: send a shorter "
            f"prompt or start the server with a larger --max-body-bytes"
        )


class AuthenticationError(SeekserveError):
    """The request carries no API key, or the wrong one."""


class ModelLoadError(SeekserveError):
    """A model directory or file is missing, incomplete or unreadable."""


class UnsupportedModelError(ModelLoadError):
    """The model's architecture is not one that seekserve implements."""


class EngineOverloadedError(SeekserveError):
    """The engine's waiting queue is full; the request was not accepted."""

    def __init__(self, num_waiting: int, max_queue_len: int, retry_after_s: float = 1.0) -> None:
        super().__init__(
            f"the server is at capacity: {num_waiting} requests are already waiting "
            f"(max_queue_len={max_queue_len}); retry after {retry_after_s:g} s"
        )
        self.retry_after_s = retry_after_s


class EngineNotReadyError(SeekserveError):
    """The model is still loading; nothing is served until it is ready."""


class RequestAbortedError(SeekserveError):
    """The request was aborted (client gone, timeout, or an explicit abort)."""


class RequestTimeoutError(RequestAbortedError):
    """The request ran past the server's per-request time limit and was aborted."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"the request did not finish within the server's limit of {timeout_s:g} s and was aborted: "
            f"ask for fewer tokens (max_tokens) or start the server with a larger --request-timeout-s"
        )
        self.timeout_s = timeout_s


class EngineDeadError(SeekserveError):
    """The engine loop stopped after a fatal error; the process must be restarted."""


class BenchError(SeekserveError):
    """A benchmark run cannot go on: the server is unreachable or rejects the warm-up request."""


class PullError(SeekserveError):
    """A model's files cannot be fetched: the hub or mirror is unreachable, refuses, or lacks them."""


class ChecksumError(PullError):
    """A fetched file does not match the SHA-256 its source published, even after fetching it again."""


class HostFixError(SeekserveError):
    """A host fix of `seekserve doctor --fix` cannot be applied (no root, a read-only file system)."""
