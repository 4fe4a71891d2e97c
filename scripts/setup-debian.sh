#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test the extension.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
set -euo pipefail

packages=(
  build-essential          # gcc, make
  postgresql-common        # pg_virtualenv, pg_createcluster
  postgresql-15            # server, contrib modules (pgcrypto), isolation tester
  postgresql-server-dev-15 # PGXS, pg_regress, pg_isolation_regress, TAP modules
  libipc-run-perl          # needed by PostgreSQL::Test::* (TAP)
  prometheus-postgres-exporter  # t/007 runs it with contrib/prometheus/queries.yaml
  prometheus               # promtool: checks and unit-tests contrib/prometheus/alerts.yml
  sqlsmith                 # make fuzz: random SQL against a cluster with the extension
  libpq-dev                # make bench: its C drivers (bench/drivers.mk) use libpq
  libhiredis-dev           # make bench: hiredis, for the same drivers
  redis-server             # make bench: the Redis-in-front design it compares against
  gnuplot-nox              # make bench: draws bench/results/throughput.png
  debhelper                # make deb: dh and pg_buildext's debhelper build system
  postgresql-server-dev-all  # make deb: pg_buildext, and the server headers of every
                           # supported major version (Build-Depends in debian/control)
  unzip                    # make check-release: looks into the make dist archive
  postgresql-15-repack     # t/027: pg_repack of idempotency.keys under load
  pgbouncer                # the payment API example's fault run goes through it
                           # (transaction pooling, examples/payment-api/README.md)
  postgresql-15-plpgsql-check  # make test-trusted: plpgsql_check over the trusted edition
  postgresql-15-cron       # make test-trusted: idempotency.reap() scheduled by pg_cron
  spin                     # make model: the SPIN model checker (model/claim.pml)
)
# Packages installed for their programs only: the tests start what they need
# themselves (the exporter, and redis-server for make bench, on free loopback
# ports; pgbouncer for the payment API's tests). These packages enable and
# start system services (ports 9090, 9187, 6379 and 6432): stop and disable
# them when this run installs them.
services=(prometheus prometheus-postgres-exporter redis-server pgbouncer)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-debian: all packages present (${packages[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "setup-debian: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for svc in "${services[@]}"; do
  case " ${missing[*]} " in *" $svc "*) ;; *) continue ;; esac
  if [ -d /run/systemd/system ]; then
    systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
done
