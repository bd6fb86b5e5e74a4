# Cairn build and test entry points. `make help` lists them.
# Heavy artefacts (kernel, Kubernetes payload) are cached outside the checkout
# in $(CAIRN_CACHE), keyed by their inputs.

SHELL := /bin/bash
CAIRN_CACHE ?= $(HOME)/.cache/cairn
OUT ?= _out
# IMAGE_CACHE=<dir> (cairnctl image cache-create) puts users' images on
# the boot medium; `make test` builds the images with a test cache.
IMAGE_CACHE ?=
TEST_IMAGE_CACHE := $(abspath $(OUT))/test-image-cache
export CAIRN_CACHE OUT IMAGE_CACHE

.PHONY: help deps lint kernel payload image image-upgrade test-image-cache test unit-test vm-test vm-test-multinode vm-test-addons bench fuzz fuzz-smoke cluster cluster-down cairnctl clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## Install the Debian packages builds and tests need
	@images/install-deps.sh

kernel: deps ## Build the kernel from kernel-config/ (cached by the fragments' hash)
	@mkdir -p $(CAIRN_CACHE)/kernel && flock $(CAIRN_CACHE)/kernel/.lock images/build-kernel.sh

payload: deps ## Build the Kubernetes payload squashfs and kubectl into _out/ (cached by versions.env and sources)
	@images/build-payload.sh

# SIGNING_KEY=<Ed25519 private key> (cairnctl gen upgrade-key) signs the
# upgrade assets: nodes whose config lists trusted keys accept only those.
# IMAGE_CACHE=<dir> (cairnctl image cache-create) adds users' images.
image: deps kernel payload ## Build vmlinuz, initramfs, ISO, raw and qcow2 images into _out/ (SIGNING_KEY=key signs, IMAGE_CACHE=dir adds images)
	@images/build-image.sh

unit-test: deps ## Run the unit and crate tests (no VMs)
	cargo test --workspace --exclude cairn-tests

# The upgrade tests move a node to a second image with another version.
image-upgrade: image ## Build the second image (another version) the upgrade tests use, into _out/upgrade/
	@OUT=$(OUT)/upgrade CAIRN_VERSION=$$(cut -d' ' -f1 $(OUT)/version)-upgrade images/build-image.sh

# The VM tests run Pods from the test image cache (tests/image-cache/); the
# Kubernetes test runs what `cluster create` prints, with $(OUT)/cairnctl.
test-image-cache: ## Build the image cache the VM tests boot with (tests/image-cache/build.sh)
	tests/image-cache/build.sh $(TEST_IMAGE_CACHE)

vm-test: IMAGE_CACHE = $(TEST_IMAGE_CACHE)
vm-test: CAIRNCTL_PROFILE = dev
vm-test: test-image-cache image image-upgrade cairnctl ## Run the QEMU tests against the images in _out/
	CAIRN_OUT=$(abspath $(OUT)) cargo test -p cairn-tests -- --test-threads=1

vm-test-multinode: image ## Run the multi-node test (a control plane and a worker from cairnctl cluster create; 15+ min under TCG, not in make test yet)
	CAIRN_OUT=$(abspath $(OUT)) cargo test -p cairn-tests --test multinode -- --ignored --nocapture

vm-test-addons: IMAGE_CACHE = $(TEST_IMAGE_CACHE)
vm-test-addons: CAIRNCTL_PROFILE = dev
vm-test-addons: test-image-cache image cairnctl ## The Kubernetes VM test alone, with its add-on checks (kubectl top, HPA, Prometheus, log store, Web UI in Chromium); CAIRN_TEST_ADDONS=0 leaves them out
	CAIRN_OUT=$(abspath $(OUT)) cargo test -p cairn-tests --test kubernetes -- --nocapture

lint: ## cargo fmt --check and clippy with warnings as errors, over the workspace
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test: IMAGE_CACHE = $(TEST_IMAGE_CACHE)
test: CAIRNCTL_PROFILE = dev
test: deps lint test-image-cache image image-upgrade cairnctl ## Run every test: lint, crate tests, then QEMU tests
	cargo test --workspace --exclude cairn-tests
	CAIRN_OUT=$(abspath $(OUT)) cargo test -p cairn-tests -- --test-threads=1

bench: image ## Measure boot time, memory and image sizes under QEMU TCG
	CAIRN_OUT=$(abspath $(OUT)) cargo run --release -p cairn-tests --bin bench
	cargo build --release -p apid
	# apid under load for 60 s: concurrent mTLS clients, slow readers, malformed
	# HTTP/2 and gRPC, handshake floods and half-open connections (apid/load)
	cargo run --release -p apid-load -- --seconds 60
	cargo run --release -p cairn-tests --bin api_bench
	CAIRN_OUT=$(abspath $(OUT)) cargo run --release -p cairn-tests --bin k8s_bench
	# the Web UI: render time of a namespace with 100 Pods, RSS after a browser session
	cargo test --release -p webui -- --nocapture rendering_100_pods the_web_ui_in_a_real_browser
	# the metrics server: RSS while serving kubectl top through a real API server
	cargo test --release -p metrics-server --test aggregated -- --nocapture
	# cluster logging: ingestion lines/s and query latency on 1 M lines, collector and store RSS
	cargo bench -p logcollector --bench logging

FUZZ_TIME ?= 600
FUZZ_SMOKE_TIME ?= 5
fuzz: ## Run every fuzz target for FUZZ_TIME seconds (default 600), one after another
	fuzz/run.sh $(FUZZ_TIME)

fuzz-smoke: ## Run every fuzz target for FUZZ_SMOKE_TIME seconds (default 5): they build, seeds and regressions pass
	fuzz/run.sh $(FUZZ_SMOKE_TIME)

# CAIRNCTL_PROFILE=dev installs the debug build: `make test` does, since its
# tests build that one anyway (a release build would add minutes).
CAIRNCTL_PROFILE ?= release
cairnctl: ## Build cairnctl into _out/ (beside kubectl)
	cargo build --profile $(CAIRNCTL_PROFILE) -p ctl
	@mkdir -p $(OUT) && install -m 0755 $${CARGO_TARGET_DIR:-target}/$(if $(filter dev,$(CAIRNCTL_PROFILE)),debug,$(CAIRNCTL_PROFILE))/cairnctl $(OUT)/cairnctl
	@echo "$(OUT)/cairnctl"

# The cluster's files (disks, consoles, configs, kubeconfig, cairnconfig) are
# in $(CAIRN_CACHE)/clusters/local; its kube context is merged into ~/.kube/config.
cluster: image cairnctl ## Boot a local cluster in QEMU: one control plane and one worker (cairnctl cluster create)
	$(OUT)/cairnctl cluster create --controlplanes 1 --workers 1 --name local --image-dir $(abspath $(OUT))

cluster-down: ## Stop and remove the local cluster (cairnctl cluster destroy)
	@if [ -x $(OUT)/cairnctl ]; then $(OUT)/cairnctl cluster destroy --name local; \
	else cargo run --release -p ctl -- cluster destroy --name local; fi

clean: ## Remove build outputs (not the cache)
	rm -rf $(OUT) target
