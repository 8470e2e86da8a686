# Mooring — the two commands of the README, plus the checks CI runs.
.PHONY: run test setup lint fmt bench

# Serve the bundled iris classifier from the bundled local registry, following its alias.
# Without chat mode (--no-default-features): iris needs neither llama.cpp nor candle.
run:
	scripts/setup.sh run
	cargo run --release -p inference-server --no-default-features -- serve --registry models \
		--model iris-classifier@production --host 127.0.0.1

# Every test, against real MLflow, Redis, llama-server and S3-compatible servers it starts.
test:
	scripts/test.sh

setup:
	scripts/setup.sh test

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
