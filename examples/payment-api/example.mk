# examples/payment-api/example.mk: the reference HTTP payment API (issue 16), included
# from the Makefile with
#     include examples/payment-api/example.mk
#   make example       a throwaway cluster, the processor, the API, and a short scripted
#                      session with the official stripe client (examples/payment-api/README.md)
#   make test-example  the example's tests alone; `make test` runs them as its "example"
#                      suite, after installing the extension
#   make bench-api     requests/s and p50/p99 through the API, idempotency enforced against
#                      idempotency.mode = off; results in examples/payment-api/bench-results/
# Each runs as root on Debian 12 with Node.js 20 and npm (npm ci installs the pinned
# dependencies); PG_CONFIG picks the PostgreSQL installation.

# Do not take over the default goal, wherever this file is included.
payment_api_saved_goal := $(.DEFAULT_GOAL)

PAYMENT_API_ENV = MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)'

.PHONY: example test-example bench-api
#> use example the reference payment API and a scripted session with the stripe client
example:
	$(PAYMENT_API_ENV) bash examples/payment-api/scripts/example.sh
#> test test-example the reference payment API's tests alone
test-example: install
	$(PAYMENT_API_ENV) bash examples/payment-api/scripts/test.sh
#> bench bench-api requests/s and latency through the reference API
bench-api:
	$(PAYMENT_API_ENV) bash examples/payment-api/scripts/bench.sh

.DEFAULT_GOAL := $(payment_api_saved_goal)
