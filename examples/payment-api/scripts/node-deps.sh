# Sourced by the example's scripts: checks for Node.js 20 or later and installs the
# dependencies exactly as pinned in package-lock.json (npm ci), into node_modules.
example_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "payment-api: Node.js 20 or later and npm are needed (node and npm on PATH)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "payment-api: Node.js 20 or later is needed, this is $(node --version)" >&2
  exit 1
fi
(cd "$example_dir" && npm ci --no-audit --no-fund --loglevel=error)
