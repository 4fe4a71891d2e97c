# Sourced by `make example` and `make bench-api`: as `make demo` does, the Debian set-up,
# then the extension built and installed into PG_CONFIG's installation.
repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
MAKE=${MAKE:-make}
export PG_CONFIG=${PG_CONFIG:-pg_config}
bash "$repo_dir/scripts/setup-debian.sh"
$MAKE --no-print-directory -C "$repo_dir" PG_CONFIG="$PG_CONFIG"
$MAKE --no-print-directory -C "$repo_dir" PG_CONFIG="$PG_CONFIG" install
