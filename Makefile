# The two commands of the README. Each does its own set-up on a fresh Debian
# machine that has the Rust toolchain (rustup).

CARGO ?= cargo

.PHONY: demo test setup setup-build

# Where `make demo` serves its HTTP API and /metrics: loopback only, and
# read-only (no token file). `make demo HTTP=127.0.0.1:0` takes a free port.
HTTP ?= 127.0.0.1:8080

## Build (release) and run the live demo of the packaging line.
demo: setup-build
	$(CARGO) build --release --locked
	./target/release/twin demo --http $(HTTP) $(ARGS)

## Formatting, lints and the whole test suite.
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

## Everything the build and tests need beyond the Rust toolchain.
setup:
	@bash scripts/setup.sh

## Only what building and running needs (no test peers).
setup-build:
	@bash scripts/setup.sh --build-only
