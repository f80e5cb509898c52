# nodrop — see README.md. `make run` is the main job, `make test` the tests.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(PATH):/usr/local/go/bin

GO      ?= go
BIN     := bin
RUN_PORT ?= 18080

.PHONY: all build run test vet bench bench-loadgen fmt

all: build

build:
	$(GO) build -o $(BIN)/nodrop ./cmd/nodrop
	CGO_ENABLED=0 $(GO) build -o $(BIN)/app ./images/app

# The main job. For now: the sample app on loopback under 5 s of strict load.
run: build
	./hack/run-local.sh $(RUN_PORT)

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

test: vet
	$(GO) test -count=1 ./...

bench: bench-loadgen

# Highest loss-free rate on one core, and nodrop vs raw vegeta CPU per request.
bench-loadgen:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./loadgen/ | tee $(BIN)/bench-loadgen.txt
