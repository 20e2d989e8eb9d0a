# Trellis: the targets operator users type.
#   make test     everything the CI runs (plugins, control plane, all tests)
#   make run      run the host (see README)
#   make render   run a plugin offline on a sample

SHELL := bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
# Every crate that builds into a plugin module (.wasm).
PLUGINS := trellis-plugin-msdeploy trellis-plugin-etcd-cluster trellis-plugin-redis trellis-plugin-appservice trellis-plugin-mydaemonset trellis-plugin-prometheus trellis-plugin-jmx-exporter trellis-test-hostile trellis-test-greeter-v1 trellis-test-greeter-v2 trellis-test-pod-from-configmap trellis-test-wit-v0-1 trellis-example-website
WASM_DIR := target/$(WASM_TARGET)/release
SAMPLES ?= deploy/samples

.PHONY: all build plugins examples sdk-check toolchain envtest promtool oci-registry cosign helm crane image up down run run-check install uninstall deploy undeploy test unit-test render bench bench-languages bench-admission bench-scale bench-sharding fmt lint clean

all: build plugins

## toolchain: the Rust target plugins compile to
toolchain:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## build: the trellis binary
build:
	$(CARGO) build --release -p trellis

## plugins: every plugin module, into target/wasm32-wasip2/release/
plugins: toolchain
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(PLUGINS))

## examples: the Website example plugin in each SDK's language, into
## target/examples/ (Rust's is among `plugins`): Python through sdk-python
## (a venv with componentize-py from PyPI), TypeScript through sdk-js
## (componentize-js from npm)
EXAMPLES_DIR := target/examples
PY_VENV := target/sdk-python-venv
examples: plugins $(EXAMPLES_DIR)/website-python.wasm $(EXAMPLES_DIR)/website-typescript.wasm \
	$(EXAMPLES_DIR)/labeler-python.wasm $(EXAMPLES_DIR)/labeler-typescript.wasm

$(PY_VENV)/bin/trellis-py: sdk-python/pyproject.toml $(wildcard sdk-python/src/trellis_sdk/*.py) sdk-python/src/trellis_sdk/wit/reconciler.wit
	python3 -m venv $(PY_VENV)
	rm -rf sdk-python/build
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check ./sdk-python
	rm -rf sdk-python/build sdk-python/src/trellis_sdk.egg-info
	touch $@

$(EXAMPLES_DIR)/website-python.wasm: examples/website/python/website.py $(PY_VENV)/bin/trellis-py
	@mkdir -p $(EXAMPLES_DIR)
	cd examples/website/python && $(CURDIR)/$(PY_VENV)/bin/trellis-py build website:Website -o $(CURDIR)/$@

sdk-js/node_modules/.installed: sdk-js/package.json sdk-js/package-lock.json
	cd sdk-js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The SDKs' test plugin of related selections and decorations (tests/sdk-labeler).
$(EXAMPLES_DIR)/labeler-python.wasm: tests/sdk-labeler/labeler.py $(PY_VENV)/bin/trellis-py
	@mkdir -p $(EXAMPLES_DIR)
	cd tests/sdk-labeler && $(CURDIR)/$(PY_VENV)/bin/trellis-py build labeler:Labeler -o $(CURDIR)/$@

$(EXAMPLES_DIR)/labeler-typescript.wasm: tests/sdk-labeler/labeler.ts $(wildcard sdk-js/src/*.ts) sdk-js/bin/trellis-js.mjs sdk-js/wit/reconciler.wit sdk-js/node_modules/.installed
	@mkdir -p $(EXAMPLES_DIR)
	node sdk-js/bin/trellis-js.mjs build tests/sdk-labeler/labeler.ts -o $@

## sdk-check: the SDKs' own tests (Python's unittest; TypeScript's type check
## of the SDK, its tests and the examples, then its unit tests)
sdk-check: sdk-js/node_modules/.installed examples/website/typescript/node_modules/.installed
	python3 -m unittest discover -s sdk-python/tests
	sdk-js/node_modules/.bin/tsc -p sdk-js
	node sdk-js/test/run.mjs

examples/website/typescript/node_modules/.installed: examples/website/typescript/package.json examples/website/typescript/package-lock.json sdk-js/node_modules/.installed
	cd examples/website/typescript && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(EXAMPLES_DIR)/website-typescript.wasm: examples/website/typescript/website.ts $(wildcard sdk-js/src/*.ts) sdk-js/bin/trellis-js.mjs sdk-js/wit/reconciler.wit examples/website/typescript/node_modules/.installed
	@mkdir -p $(EXAMPLES_DIR)
	cd examples/website/typescript && npx trellis-js build website.ts -o $(CURDIR)/$@

## envtest: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and
## kubectl (e2e_readme runs the README's kubectl lines), built from Go source
## through the module proxy (cached in ~/.cache/trellis)
envtest:
	tests/control-plane build --with-kwok --with-kubectl

## promtool: Prometheus's promtool from Go source through the module proxy (cached in
## ~/.cache/trellis); render_monitoring checks the generated configs with it
promtool:
	tests/go-tool build promtool

## oci-registry: the CNCF distribution registry from Go source through the module proxy
## (cached in ~/.cache/trellis); the OCI tests push plugin modules to it and pull them back
oci-registry:
	tests/go-tool build registry

## cosign: sigstore's cosign from Go source through the module proxy (cached in
## ~/.cache/trellis); the signature tests sign module artifacts with it
cosign:
	tests/go-tool build cosign

## helm / crane: Helm 3 and go-containerregistry's crane from Go source through the
## module proxy (cached in ~/.cache/trellis); the chart tests run helm, `make image` crane
helm:
	tests/go-tool build helm

crane:
	tests/go-tool build crane

## image: the host's OCI image without a Docker engine (deploy/image/build): Debian's
## glibc and CA bundle, the bundled plugins compiled ahead, `trellis run` as user 65532;
## into target/image/ (oci/ layout, trellis.tar, image.json); IMAGE=REGISTRY/REPO:TAG
## pushes it there too (credentials from ~/.docker/config.json, as crane reads them)
image: plugins crane
	$(CARGO) build --release -p trellis
	deploy/image/build --binary target/release/trellis --strip
	@if [ -n "$(IMAGE)" ]; then "$$(tests/go-tool path crane)" push target/image/oci "$(IMAGE)"; fi

## up / down: a local control plane in the background (prints `export KUBECONFIG=...`)
up: envtest
	@tests/control-plane up

down:
	@tests/control-plane down

## run: the host with the bundled plugins on KUBECONFIG's cluster, or on a local
## control plane when none is configured; applies each sample into a namespace of
## its own, waits until each is Ready and prints a summary (TRELLIS_RUN_ONCE=1 stops there)
run: plugins
	$(CARGO) build -p trellis
	deploy/run-local

## install / uninstall: the CRDs into KUBECONFIG's cluster
install:
	kubectl apply --server-side -f deploy/crds/

uninstall:
	kubectl delete --ignore-not-found -f deploy/crds/

## deploy / undeploy: the host, its RBAC and CRDs through kustomize (image `trellis:dev`,
## see `make image`); the Helm chart deploy/helm/trellis renders the same objects
deploy:
	kubectl apply --server-side -k deploy/

undeploy:
	kubectl delete --ignore-not-found -k deploy/

## unit-test: tests that need no control plane
unit-test: examples sdk-check
	$(CARGO) test -p trellis -p trellis-sdk

## run-check: `make run` as CI runs it: non-interactive, on a local control
## plane of its own; fails unless every sample becomes Ready
run-check:
	TRELLIS_RUN_ONCE=1 TRELLIS_LOCAL_CLUSTER=1 TRELLIS_METRICS_ADDR=127.0.0.1:18080 TRELLIS_WEBHOOK_PORT=19443 $(MAKE) run

## test: the whole suite, against a real control plane, and the main command
test: plugins examples envtest promtool oci-registry cosign helm crane sdk-check
	$(MAKE) run-check
	$(CARGO) test --workspace

## render: msdeploy on the sample, offline
render: plugins
	$(CARGO) run -q -p trellis -- render --plugin $(WASM_DIR)/trellis_plugin_msdeploy.wasm --parent $(SAMPLES)/microservicedeploy.yaml

## bench: criterion benchmarks of the runtime (plugin call and compile)
bench: plugins
	$(CARGO) bench -p trellis --bench runtime

## bench-languages: the Website example in Rust, Python and TypeScript: module
## size, compile cold and cached, start to serving, per-call p50/p90
## (target/languages-bench.json)
bench-languages: examples
	$(CARGO) bench -p trellis --bench languages

## bench-sharding: N=3000 MicroServiceDeploy parents shared by 1, 2 and 3
## `trellis run` replicas (--shards 12): throughput, host CPU per replica,
## apiserver CPU (target/sharding-bench.json)
bench-sharding: plugins envtest
	$(CARGO) build --release -p trellis
	TRELLIS_SCALE_N=$${TRELLIS_SCALE_N:-3000} TRELLIS_SCALE_REPLICAS=$${TRELLIS_SCALE_REPLICAS:-1,2,3} $(CARGO) bench -p trellis --bench scale

## bench-admission: what the plugins' webhooks add to a request: client p50/p99
## of server-side dry-run creates without and with them, and the host-side time
## per admission call (target/admission-bench.json)
bench-admission: plugins envtest
	$(CARGO) bench -p trellis --bench admission

## bench-scale: N MicroServiceDeploy parents (TRELLIS_SCALE_N=1000,3000; default
## 1000) on one local control plane, reconciled by the hand-written kube-rs
## reference controller (bench/reference) and then by Trellis: wall time, CPU
## per parent, peak RSS, API requests by verb, ratios (target/scale-bench.json)
bench-scale: plugins envtest
	$(CARGO) build --release -p trellis -p trellis-bench-reference
	$(CARGO) bench -p trellis --bench scale

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
