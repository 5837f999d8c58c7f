# amber — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 5s
# Minimizing a new input can outlast a short -fuzztime, and go test then
# fails with "context deadline exceeded": short runs do not minimize.
FUZZMINIMIZE ?= 0s
# Every package with a fuzz target (found, so that one moved to another
# package is never dropped from make test).
PKG_FUZZ := $(shell find . -path ./bench -prune -o -name '*_test.go' -print | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u)

.PHONY: all build deps test lint unit race fuzz fuzz-long bench soak demo clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/amber ./cmd/amber

# Installs (as root) and starts what the tests need: docker.io, fuse3,
# busybox-static, zstd, umoci, skopeo, squashfs tools; a running dockerd.
deps:
	./scripts/ensure-deps.sh

# make test: everything CI runs. Needs Docker and the tools above; with CI
# set, a test that cannot reach them fails instead of skipping.
test: deps lint unit race fuzz

# make lint: gofmt, go vet (also for macOS), the examination commands'
# cross-builds for macOS and Windows (pure Go: the cgo zstd encoder is
# Linux's), and staticcheck at a pinned version, installed once into
# bin/tools/VERSION by go install.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/$(STATICCHECK_VERSION)/staticcheck

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/amber
	GOOS=windows CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/amber
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The packages that drive the Docker engine or start their own runtimes
# run one at a time, after the rest: each checks that the engine's lists
# are as it left them, which another package building its test images at
# the same moment would upset.
ENGINE_PKGS := ./cmd/amber ./snapshot/docker ./snapshot/dockerroot ./snapshot/podman ./snapshot/containerd ./snapshot/kube ./internal/testenv
# A dead host's containerd root, read from its own containerd's files.
ENGINE_PKGS += ./snapshot/containerdroot

unit:
	$(GO) test -count=1 -timeout 12m $(filter-out $(shell $(GO) list $(ENGINE_PKGS)),$(shell $(GO) list ./...))
	$(GO) test -count=1 -timeout 12m -p 1 $(ENGINE_PKGS)
	$(GO) test -count=1 -timeout 5m -tags amber_purego ./archive/... ./fileindex ./snapshot

# The concurrent packages again under the race detector.
race:
	$(GO) test -race -count=1 -timeout 5m -short ./archive ./fileindex ./internal/... ./snapshot ./view ./fusefs

# Each fuzz target for FUZZTIME (a few seconds in make test; make
# fuzz-long runs them for 10 minutes each).
fuzz:
	@for pkg in $(PKG_FUZZ); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    ok=0; for try in 1 2 3; do \
	      if $(GO) test $$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) >/tmp/amber-fuzz.log 2>&1; then ok=1; break; fi; \
	      grep -q 'context deadline exceeded' /tmp/amber-fuzz.log && ! grep -q 'Failing input' /tmp/amber-fuzz.log || break; \
	      echo "  (go's fuzz engine missed its own deadline, not a finding: again)"; \
	    done; \
	    [ $$ok = 1 ] || { cat /tmp/amber-fuzz.log; exit 1; }; \
	  done; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m FUZZMINIMIZE=60s

# Coverage of the whole program (not part of make test: it runs what make
# unit runs, slower): every test binary covers all of the program's
# packages, and so does the amber binary the end-to-end tests run
# (cmd/amber's TestMain builds it with -cover under go test -cover); all
# their counters go to one directory (world-writable: a test runs amber as
# nobody), merged with go tool covdata. Prints each package's figure and
# the total, and leaves COVERDIR/coverage.out for go tool cover -html; a
# failing test fails the target once the figures are printed.
COVERDIR ?= $(CURDIR)/bin/cover
# The program's packages, not the test support (fixtures, testenv, archtest).
COVERPKG = $(shell $(GO) list ./... | grep -v -e /internal/fixture -e /internal/testenv -e /internal/archtest | paste -sd, -)
.PHONY: cover
cover: deps
	rm -rf $(COVERDIR) && mkdir -p $(COVERDIR)/data && chmod 0777 $(COVERDIR)/data
	$(GO) test -count=1 -timeout 30m -p 1 -cover -covermode=atomic -coverpkg=$(COVERPKG) ./... -args -test.gocoverdir=$(COVERDIR)/data; \
	  rc=$$?; \
	  $(GO) tool covdata percent -i=$(COVERDIR)/data && \
	  $(GO) tool covdata textfmt -i=$(COVERDIR)/data -o $(COVERDIR)/coverage.out && \
	  $(GO) tool cover -func=$(COVERDIR)/coverage.out | tail -1 && \
	  exit $$rc

# Benchmarks against baselines measured in the same run (bench/README.md).
bench: deps build
	./bench/run.sh
	./bench/mount.sh
	./bench/container.sh
	./bench/containerd.sh
	./bench/host.sh
	./bench/bounds.sh
	./bench/registry.sh
	./bench/report.sh
	./bench/browse.sh
	./bench/export.sh

# 16 concurrent readers on the mounted corpus for SOAK_SECONDS (default
# 120); every byte checked, RSS and open fds must not grow. Then
# SIGNAL_RUNS (default 100) captures stopped by SIGINT/SIGTERM at random
# moments (make test runs 8).
SIGNAL_RUNS ?= 100
soak: deps build
	[ -s bench/out/corpus.tar ] || RUNS=1 ./bench/run.sh >/dev/null
	./scripts/soak.sh
	AMBER_SIGNAL_RUNS=$(SIGNAL_RUNS) $(GO) test -count=1 -timeout 60m -run '^TestCaptureSignalsRandom$$' -v ./cmd/amber >/tmp/amber-signals.log 2>&1; \
	  rc=$$?; grep -vE '^=== ' /tmp/amber-signals.log | tail -20; exit $$rc

# The main job on the shipped default (testdata/images): capture, verify,
# list, grep, diff; then, when an engine is there, a live container captured
# with its memory. deps brings what it calls (getfattr, zstd, the engine).
demo: deps build
	./scripts/demo.sh

clean:
	rm -rf bin demo bench/out
