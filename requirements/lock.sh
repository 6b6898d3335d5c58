#!/usr/bin/env bash
# Regenerate the locks from pyproject.toml's ranges: serve.lock (the runtime with the default model
# and web-search extraction) and test.lock (what the test suite installs). Both leave torch out, since it is installed first
# (torch==2.13.0, the CPU build on CI); torch.txt pins it so its dependencies are the CPU build's.
# After regenerating, run `bash .ci/run` (which installs from test.lock) before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pip-compile >/dev/null; then
    echo "pip-compile not found: pip install pip-tools" >&2
    exit 1
fi
common=(--quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
        --unsafe-package torch --unsafe-package seekserve --constraint requirements/torch.txt "$@")
pip-compile "${common[@]}" --extra default-model --extra search --output-file requirements/serve.lock pyproject.toml
pip-compile "${common[@]}" --extra test --output-file requirements/test.lock pyproject.toml
