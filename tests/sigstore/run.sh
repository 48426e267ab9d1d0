#!/usr/bin/env bash
# The Sigstore client conformance suite's verification cases, run offline against
# imagelock's verifier: the `sigstore-conformance` example (tests/sigstore/conformance.rs)
# is the suite's entrypoint, and pytest runs in a fresh network namespace (`unshare -n`),
# so a case that reached for the network would fail. The suite is the copy in
# tests/sigstore/conformance-suite (see ORIGIN.md there; override with
# SIGSTORE_CONFORMANCE); its Python dependencies go into a venv in the target directory.
#
#   tests/sigstore/run.sh --install   only (re)create the venv (.ci/run, while online)
#   tests/sigstore/run.sh [ARGS...]   build the entrypoint, then run the suite (extra
#                                     arguments go to pytest)
#
# `cargo test` runs the suite too (tests/cli/sigstore.rs, `conformance_suite_...`), from
# the venv this script installs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
suite=${SIGSTORE_CONFORMANCE:-$repo/tests/sigstore/conformance-suite}
target=${CARGO_TARGET_DIR:-$repo/target}
venv=$target/sigstore-conformance-venv

# (Re)install the suite's pinned, hash-checked requirements when they change.
if ! cmp -s "$suite/requirements.txt" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --require-hashes -r "$suite/requirements.txt"
  cp "$suite/requirements.txt" "$venv/requirements.txt"
fi
if [ "${1:-}" = "--install" ]; then exit 0; fi

(cd "$repo" && cargo build --locked --quiet --example sigstore-conformance)
entrypoint=$target/debug/examples/sigstore-conformance

# No network: root gets a bare network namespace; others map themselves to root first.
if [ "$(id -u)" -eq 0 ]; then offline=(unshare --net); else offline=(unshare --map-root-user --net); fi
cd "$suite"
# No .pytest_cache, no __pycache__ in the suite's directory.
PYTHONDONTWRITEBYTECODE=1 exec "${offline[@]}" "$venv/bin/pytest" test --skip-signing \
  --entrypoint="$entrypoint" -p no:cacheprovider "$@"
