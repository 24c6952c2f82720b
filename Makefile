# ptest-snap — build, test, benchmark, lint.
GO      ?= go
BIN     ?= $(CURDIR)/bin
PKGS    ?= ./...
ENGINES := $(wildcard plugins/*/cmd/ptest-snap-engine-*)

.PHONY: all build test bench bench-micro lint proto clean

all: build

## build: every binary into ./bin (the CLI and, next to it, the built-in engines)
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/ptest-snap $(addprefix ./,$(ENGINES))

## test: the whole suite, race detector on
test: build
	PTEST_SNAP_BIN=$(BIN) $(GO) test -race -count=1 -timeout 25m $(PKGS)

## bench: the side-by-side benchmark harness (see README); BENCHFLAGS passes flags
bench: build
	PTEST_SNAP_BIN=$(BIN) $(GO) run ./bench -bin $(BIN) $(BENCHFLAGS)

## bench-micro: Go micro-benchmarks of the hot paths (chunking, hashing, compression, put/get, trees)
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./compress/ ./store/

## lint: go vet and staticcheck
lint:
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## proto: regenerate the engine protocol's Go code (generated code is committed)
proto:
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		pluginapi/proto/engine.proto

clean:
	rm -rf $(BIN)
