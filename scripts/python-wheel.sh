#!/usr/bin/env bash
# Builds the Python module `crac` (bindings/python) into a wheel with maturin
# and installs it into the virtual environment target/pyenv, made on first
# use (maturin comes from PyPI then; later runs reuse it). Prints the
# environment's python3. The Python tests (crates/crac-cli/tests/python.rs)
# run it; concurrent runs wait for each other.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
exec 9>target/pyenv.lock
flock 9

command -v python3 >/dev/null || { echo "python3 is missing: the Python module needs it (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
if [ ! -x target/pyenv/bin/python3 ]; then
  rm -rf target/pyenv
  python3 -m venv target/pyenv >&2 ||
    { echo "python3 -m venv failed: install venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
py=target/pyenv/bin/python3
if ! "$py" -m maturin --version >/dev/null 2>&1; then
  "$py" -m pip install -q 'maturin>=1.5,<2' >&2 ||
    { echo "cannot install maturin from PyPI into target/pyenv" >&2; exit 1; }
fi
# Its own target directory: the extension is libcrac.so too (module crac),
# which must not replace the workspace's libcrac.so.
rm -rf target/pywheels
CARGO_TARGET_DIR="$PWD/target/python-bindings" \
  "$py" -m maturin build --release --locked -q -m bindings/python/Cargo.toml -o target/pywheels >&2
"$py" -m pip install -q --force-reinstall --no-deps target/pywheels/crac-*.whl >&2
echo "$PWD/$py"
