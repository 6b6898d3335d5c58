"""`seekserve serve` whose engine steps raise once a trigger file exists: an engine failure on demand.

    python tests/server/faulty_serve.py TRIGGER_FILE [serve options...]

Run as a child process by tests: it replaces `ModelRunner.execute` with a wrapper that raises
RuntimeError("injected step failure") when TRIGGER_FILE exists, then runs the real CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from seekserve.cli import cli
from seekserve.engine.model_runner import ModelRunner

FAULT = "injected step failure"


def main() -> None:
    trigger = Path(sys.argv[1])
    execute = ModelRunner.execute

    def failing(self: ModelRunner, *args: Any, **kwargs: Any) -> Any:
        if trigger.exists():
            raise RuntimeError(FAULT)
        return execute(self, *args, **kwargs)

    ModelRunner.execute = failing  # type: ignore[method-assign]
    cli(["serve", *sys.argv[2:]], prog_name="seekserve")


if __name__ == "__main__":
    main()
