# `make model`: the SPIN model of the claim protocol (model/claim.pml; its
# bounds, properties and step table are in model/README.md).  MODEL_OLD=1
# checks the behaviour of 05d5658 instead, which must fail: the lease theft
# (22.1) and the release that drops a charged key (22.5); each prints its
# trail.  Included from the Makefile:
#     include model/model.mk

# Do not take over the default goal, wherever this file is included.
idempotency_model_saved_goal := $(.DEFAULT_GOAL)

# Two durable claims that wait (the second one's fingerprint either), READ
# COMMITTED, the reaper, the clock, one crash anywhere.
MODEL_BOUNDS ?= -DNPROC=2 -DFIXED_ROLES -DNO_RR -DNO_MODE
.PHONY: model
#> test model the SPIN model of the claim protocol: the fixed protocol passes, 05d5658's fails
ifeq ($(MODEL_OLD),1)
model:
	bash model/run.sh lease-theft fail $(MODEL_BOUNDS) -DMAXCRASH=0 -DOLD_DECIDE -DCHECKS=4
	bash model/run.sh charge-loses-key fail $(MODEL_BOUNDS) -DMAXCRASH=0 -DOLD_GUARD -DCHECKS=2
else
model:
	bash model/run.sh fixed pass $(MODEL_BOUNDS) -DMAXCRASH=1
	bash model/run.sh lease-theft fail $(MODEL_BOUNDS) -DMAXCRASH=0 -DOLD_DECIDE -DCHECKS=4
	bash model/run.sh charge-loses-key fail $(MODEL_BOUNDS) -DMAXCRASH=0 -DOLD_GUARD -DCHECKS=2
endif

.DEFAULT_GOAL := $(idempotency_model_saved_goal)
