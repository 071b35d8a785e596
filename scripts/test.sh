#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, build, all tests.
# Usage: scripts/test.sh   (from anywhere; needs the stable Rust toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh machine may lack the components rust-toolchain.toml names.
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The restorer is its own workspace (no_std, panic=abort, its own linker
# settings in crates/crac-restorer/.cargo): check it from its directory.
echo "== restorer: fmt and clippy"
cargo fmt --manifest-path crates/crac-restorer/Cargo.toml -- --check
(cd crates/crac-restorer &&
  CARGO_TARGET_DIR="$PWD/../../target/restorer-clippy" \
    cargo clippy --release --locked --offline -- -D warnings)
# The Python module is its own workspace too (PyO3 needs python3 to build;
# the Python tests in crates/crac-cli/tests/python.rs build its wheel).
echo "== Python module: fmt, clippy and unit tests"
cargo fmt --manifest-path bindings/python/Cargo.toml -- --check
(cd bindings/python &&
  CARGO_TARGET_DIR="$PWD/../../target/python-bindings" \
    cargo clippy --all-targets --locked -- -D warnings &&
  CARGO_TARGET_DIR="$PWD/../../target/python-bindings" cargo test --locked -q)
echo "== cargo build (payloads and binaries the tests run)"
cargo build --workspace --all-targets --locked
echo "== cargo test"
cargo test --workspace --locked -- --test-threads=2
