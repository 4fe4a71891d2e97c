# `make model`: the SPIN model of the claim protocol (model/claim.pml,
# model/README.md).  MODEL_OLD=1 checks the behaviour of 05d5658 instead,
# which must fail (the lease theft, and a charge that loses its key).
# Included from the Makefile:
#     include model/model.mk

# Do not take over the default goal, wherever this file is included.
idempotency_model_saved_goal := $(.DEFAULT_GOAL)

MODEL_BOUNDS ?= -DNO_RR -DNO_MODE -DMAXCRASH=0
.PHONY: model
ifeq ($(MODEL_OLD),1)
model:
	bash model/run.sh lease-theft fail -DNPROC=2 -DOLD_DECIDE -DCHECKS=4 $(MODEL_BOUNDS)
	bash model/run.sh charge-loses-key fail -DNPROC=2 -DOLD_GUARD -DCHECKS=2 $(MODEL_BOUNDS)
else
model:
	bash model/run.sh fixed-2 pass -DNPROC=2 $(MODEL_BOUNDS)
	bash model/run.sh fixed-3 pass -DNPROC=3 $(MODEL_BOUNDS)
endif

.DEFAULT_GOAL := $(idempotency_model_saved_goal)
