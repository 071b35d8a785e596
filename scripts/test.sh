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
echo "== cargo build (payloads and binaries the tests run)"
cargo build --workspace --all-targets --locked
echo "== cargo test"
cargo test --workspace --locked -- --test-threads=2
