# nodrop — see README.md. `make run` is the main job, `make test` the tests.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

GO      ?= go
BIN     := bin
OUT     := out
# Ginkgo label filter for `make e2e` (labels: suites/labels.go).
LABELS  ?=
# Extra flags for the suites, e.g. E2E_FLAGS=-ginkgo.v
E2E_FLAGS ?=
# Ginkgo processes for the suites. 1 (the default): every spec in order
# in the test binary, progress streamed live; E2E_FLAGS are then -ginkgo.*
# flags. N > 1: the specs not marked Serial (rollout variants, nginx
# upgrades) N at a time, each in its own namespace, then the Serial ones;
# run by Ginkgo's CLI, which merges the reports; E2E_FLAGS are then the
# CLI's flags (e.g. -v, --focus=...). On two cores two at a time starves
# either the load generator (runs not judged) or, with the generator
# favoured, the pods under test (wrong verdicts), so several processes
# run without that priority, and CI and `make run` stay serial (docs/ci.md).
PROCS ?= 1
# How much load those processes may send at once, in slots (0: no
# bound): a run takes one per 1,000 rps kept alive and two for fresh
# connections (scenario.LoadCost), so LOAD_SLOTS=2 lets two kept-alive
# runs load together and a fresh one alone; the other processes deploy,
# wait and tear down meanwhile.
LOAD_SLOTS ?= 0
export NODROP_LOAD_SLOTS := $(LOAD_SLOTS)
# 1: favour the suites' session over the kind cluster (its autogroup at
# nice -5, internal/sched): no generator stalls, but the keep-alive
# claims have not been measured with it (docs/ci.md); one process only.
FAVOUR_SESSION ?= 0
export NODROP_FAVOUR_SESSION := $(FAVOUR_SESSION)
# A folder: the Go execution trace around each stall of the load
# generator of 50 ms or more is written there (go tool trace; at most 20).
STALL_TRACE ?=
export NODROP_STALL_TRACE := $(STALL_TRACE)

.PHONY: all build run test chromium unit container vet docker e2e e2e-ci chaos proxy soak node-image cluster-up cluster-down bench bench-loadgen load-local

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/nodrop ./cmd/nodrop

# Docker engine (installed and started where missing), debootstrap, jq.
docker:
	./hack/ensure-docker.sh

# The main job: the offline kind cluster (node image built once and
# cached; a cluster made from another config or image, or stopped, is
# replaced, a matching healthy one reused), nodrop's images, then the
# rollout suite under load with its negative controls; prints the verdict
# table (also in out/).
run: docker build
	./$(BIN)/nodrop cluster up --recreate --with-kruise --with-ingress
	$(MAKE) e2e LABELS='rollout || hotupgrade'

# Everything CI checks: formatting, vet, unit and process tests, the
# container tests, then the suites on the kind cluster.
test: vet docker chromium unit container e2e-ci

# A headless Chromium for the bench page's check (bench/page_test.go).
chromium:
	./hack/ensure-chromium.sh

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Unit and process tests: no Docker, no cluster. One package at a time
# (-p 1): several send real load and judge whether it was delivered, which
# another package's test binary competing for the 2 cores can deny them.
unit:
	$(GO) test -p 1 -count=1 $$($(GO) list ./... | grep -v -e /suites$$ -e /images$$)

# Container tests: the sample images under docker run (needs Docker).
container: docker
	$(GO) test -count=1 ./images/

# The Ginkgo suites, run as a compiled test binary so progress streams
# live; JUnit and JSON reports and the summary table go to out/. When a
# spec fails, the last lines say why each failed (hack/failures). The
# suites give their threads nice -5 (their TestMain, internal/sched: as
# nodrop check does); against the kind cluster that counts only with
# FAVOUR_SESSION=1 (above).
e2e:
	mkdir -p $(OUT) $(BIN)
	rm -rf $(OUT)/summary.md $(OUT)/junit.xml $(OUT)/report.json $(OUT)/results
	$(GO) build -o $(BIN)/failures ./hack/failures
ifeq ($(PROCS),1)
	$(GO) test -c -o $(BIN)/suites.test ./suites
	cd suites && ../$(BIN)/suites.test -test.timeout 90m -ginkgo.timeout 85m -ginkgo.label-filter='$(LABELS)' \
		-ginkgo.junit-report=$(CURDIR)/$(OUT)/junit.xml -ginkgo.json-report=$(CURDIR)/$(OUT)/report.json $(E2E_FLAGS) \
		|| { $(CURDIR)/$(BIN)/failures $(CURDIR)/$(OUT)/report.json; exit 1; }
else
	$(GO) build -o $(BIN)/ginkgo github.com/onsi/ginkgo/v2/ginkgo
	./$(BIN)/ginkgo run --procs=$(PROCS) --timeout=85m --label-filter='$(LABELS)' \
		--junit-report=$(CURDIR)/$(OUT)/junit.xml --json-report=$(CURDIR)/$(OUT)/report.json $(E2E_FLAGS) ./suites \
		|| { ./$(BIN)/failures $(CURDIR)/$(OUT)/report.json; exit 1; }
endif

# CI's subset: every spec but those labelled extended (docs/ci.md): each
# catalogue variant in its load modes, the chaos cases but the extended
# ones; the baseline's other disruptions (image change, scale-down, pod
# deletion) are make run's and make e2e's.
e2e-ci:
	$(MAKE) e2e LABELS='(cluster || check || rollout || hotupgrade || chaos || proxy) && !extended'

# The chaos specs alone: faults injected during rollouts (Serial).
chaos:
	$(MAKE) e2e LABELS='chaos'

# The proxy specs alone: rollouts behind nginx and HAProxy.
proxy:
	$(MAKE) e2e LABELS='proxy'

# The null run (label slow, not in CI): ten minutes of load with nothing
# happening, both modes: 0 lost, rate within 1 %, the generator's memory
# flat.
soak:
	$(MAKE) e2e LABELS='slow'

node-image: build docker
	./$(BIN)/nodrop node-image build

cluster-up: build docker
	./$(BIN)/nodrop cluster up

cluster-down: build
	./$(BIN)/nodrop cluster down

# Every catalogue variant side by side, both load modes, RUNS runs each:
# results.md, results.json and the table at the end, in out/bench.
RUNS ?= 3
bench: docker build
	./$(BIN)/nodrop bench --all --mode both --runs $(RUNS) --out $(OUT)/bench

# Highest loss-free rate on one core, and nodrop vs raw vegeta CPU per request.
bench-loadgen:
	mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./loadgen/ | tee $(BIN)/bench-loadgen.txt

# nodrop load against the sample app on loopback, no cluster needed.
load-local:
	$(GO) build -buildvcs=auto -o $(BIN)/nodrop ./cmd/nodrop
	CGO_ENABLED=0 $(GO) build -o $(BIN)/app ./images/app
	./hack/run-local.sh $${RUN_PORT:-18080}
