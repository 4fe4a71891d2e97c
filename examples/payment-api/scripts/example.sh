#!/usr/bin/env bash
# `make example`: builds and installs the extension, then runs scripts/example.js, a
# scripted session with the official stripe client against a throwaway cluster, the
# processor and the API (everything it starts, it stops).
set -euo pipefail
. "$(dirname "$0")/install-extension.sh"
. "$(dirname "$0")/node-deps.sh"
exec node "$example_dir/scripts/example.js"
