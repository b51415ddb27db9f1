# The resilience lab. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath .)
GO          ?= go
SERVICES    := catalog payments orders gateway notifications
BIN         := bin/linux-amd64
IMAGE_TAG   ?= dev
COMPOSE     := docker-compose -p reslab -f deploy/compose.yaml
LABEL       := org.resilience-lab.managed=true

# Testcontainers on this machine: it looks like a container to testcontainers-go, which would otherwise
# dial the default gateway; Ryuk's image cannot be pulled, so every test cleans up after itself.
export TESTCONTAINERS_HOST_OVERRIDE := 127.0.0.1
export TESTCONTAINERS_RYUK_DISABLED := true

# pact-go links libpact_ffi 0.4.28, provisioned by scripts/pact-tools.sh into .cache/pact.
PACT_DIR    := $(ROOT)/.cache/pact
export CGO_LDFLAGS := -L$(PACT_DIR)/lib
export LD_LIBRARY_PATH := $(PACT_DIR)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export PATH := $(PACT_DIR)/cli:$(PATH)
# pact-go's verifier otherwise reports usage statistics over the network.
export PACT_DO_NOT_TRACK := true

# Packages tested with the race detector in one go; contracts (cgo + pact tag) and the chaos scenarios
# (Docker, timing-sensitive) have their own lines.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/contracts' -e '/scenarios$$')

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

## ---- set-up ---------------------------------------------------------------------------------------

.PHONY: docker-engine
docker-engine: ## Install (Debian docker.io, docker-compose) and start the Docker engine on 127.0.0.1
	@bash scripts/docker-engine.sh

.PHONY: pact-tools
pact-tools: ## Fetch libpact_ffi 0.4.28 and the official pact CLI from npm into .cache/pact
	@bash scripts/pact-tools.sh

## ---- build ----------------------------------------------------------------------------------------

.PHONY: build
build: ## Compile every package
	$(GO) build ./...

.PHONY: binaries
binaries: ## Build static linux binaries of every service into bin/
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/$$s ./services/$$s/cmd/$$s; \
	done
	@CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/nats-server ./events/cmd/nats-server
	@CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/toxiproxy ./scenarios/lab/toxiproxy/cmd/toxiproxy
	@CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/broker ./contracts/broker/cmd/broker
	@CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/etcd ./discovery/cmd/etcd
	@echo "binaries in $(BIN): $(IMAGES)"

IMAGES      = $(SERVICES) nats-server toxiproxy broker etcd

.PHONY: images
images: binaries docker-engine ## Build the FROM-scratch image of every service, NATS, Toxiproxy, the broker and etcd (nothing is pulled)
	@for s in $(IMAGES); do \
	  DOCKER_BUILDKIT=0 docker build -q -f deploy/docker/Dockerfile --build-arg BINARY=$$s \
	    --label $(LABEL) -t reslab/$$s:$(IMAGE_TAG) . >/dev/null; \
	  echo "image reslab/$$s:$(IMAGE_TAG)"; \
	done

## ---- run ------------------------------------------------------------------------------------------

.PHONY: lab
lab: docker-engine ## The main job: run every chaos scenario (without/with) on a fresh stack; reports in results/
	$(GO) run ./scenarios/cmd/lab $(if $(ONLY),-only $(ONLY))

.PHONY: demo
demo: images ## Start the shop as containers, walk one customer through the gateway, stop it
	@trap '$(COMPOSE) down -v --remove-orphans >/dev/null 2>&1' EXIT; \
	$(COMPOSE) up -d --no-build; \
	$(GO) run ./scenarios/cmd/demo -gateway http://127.0.0.1:8080 -wait 60s

.PHONY: stack-up
stack-up: images ## Start the shop stack (catalog and payments ×2, notifications, etcd, Toxiproxy on every link, replica and service→NATS, NATS, broker) and wait until it is healthy
	$(COMPOSE) up -d --no-build --remove-orphans
	@for i in $$(seq 120); do \
	  states=$$(docker inspect -f '{{.State.Health.Status}}' $$($(COMPOSE) ps -q) | sort -u | xargs); \
	  [ "$$states" = healthy ] && break; \
	  if [ $$i = 120 ]; then $(COMPOSE) ps; echo "stack-up: not healthy within 60s ($$states)" >&2; exit 1; fi; \
	  sleep 0.5; \
	done
	@echo "gateway http://127.0.0.1:8080 · Toxiproxy API http://127.0.0.1:8474 · broker http://127.0.0.1:9292"

# Named load profiles for `make load PROFILE=…` (docs/loadtest.md); LOAD_FLAGS adds loadgen flags.
PROFILE          ?= steady
PROFILE_steady   := constant:rate=50,d=30s
PROFILE_ramp     := ramp:from=10,to=90,d=60s
PROFILE_step     := step:from=20,step=20,every=10s,steps=4
PROFILE_spike    := spike:base=30,peak=90,at=10s,for=5s,d=30s
LOAD_OUT         ?= results/load-$(PROFILE)

.PHONY: load
load: ## Load the running stack through its gateway: PROFILE=steady|ramp|step|spike, FAULT='payments:latency=500ms@10s-20s'; report in results/
	@test -n "$(PROFILE_$(PROFILE))" || { echo "load: unknown PROFILE=$(PROFILE) (steady, ramp, step, spike)" >&2; exit 2; }
	$(GO) run ./loadtest/cmd/loadgen --mix loadtest/mixes/shop.json --profile '$(PROFILE_$(PROFILE))' \
	  --threshold 'p99<500ms' --threshold 'errors<1%' --out $(LOAD_OUT) $(if $(FAULT),--fault '$(FAULT)') $(LOAD_FLAGS)

.PHONY: stack-down
stack-down: ## Stop the shop stack and remove its volumes
	$(COMPOSE) down -v --remove-orphans

.PHONY: stack-logs
stack-logs: ## Follow the shop stack's logs
	$(COMPOSE) logs -f --tail=100

## ---- test -----------------------------------------------------------------------------------------

.PHONY: test
test: docker-engine pact-tools ## All tests: vet, unit and integration tests (race detector), contracts
	$(GO) vet ./...
	$(GO) vet -tags pact ./contracts/...
	$(GO) test -race -count=1 $(UNIT_PKGS)
	$(GO) test -race -count=1 -tags pact ./contracts/...
	$(MAKE) --no-print-directory contracts
	FUZZTIME=3000x bash scripts/fuzz.sh
	$(GO) test -count=1 -timeout 20m ./scenarios

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 60s; make test runs 3000 inputs each)
	FUZZTIME=$(or $(FUZZTIME),60s) bash scripts/fuzz.sh

.PHONY: contracts
contracts: pact-tools ## Contract CI flow: consumer tests → publish → verify from the broker → can-i-deploy → record-deployment → negative check
	@bash scripts/pact-flow.sh

.PHONY: vet
vet: ## go vet and gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }

.PHONY: soak
soak: ## Opt-in soak: the in-process shop at half its measured capacity for SOAK_DURATION (10m); fails on goroutine or heap growth at rest
	SOAK_DURATION=$(or $(SOAK_DURATION),10m) $(GO) test -tags soak -run TestSoak -count=1 -timeout 45m -v ./soak/

.PHONY: bench
bench: ## Resilience policy benchmarks (see docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem ./resilience/...

## ---- clean ----------------------------------------------------------------------------------------

.PHONY: clean
clean: ## Remove the containers, volumes and networks the lab left behind (by label), and build outputs (images stay: the build cache)
	-@$(COMPOSE) down -v --remove-orphans >/dev/null 2>&1 || true
	-@ids=$$(docker ps -aq --filter label=$(LABEL) 2>/dev/null); [ -z "$$ids" ] || docker rm -f -v $$ids >/dev/null
	-@ids=$$(docker volume ls -q --filter label=$(LABEL) 2>/dev/null); [ -z "$$ids" ] || docker volume rm $$ids >/dev/null
	-@ids=$$(docker network ls -q --filter label=$(LABEL) 2>/dev/null); [ -z "$$ids" ] || docker network rm $$ids >/dev/null
	rm -rf bin results
