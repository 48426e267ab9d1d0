#!/usr/bin/env bash
# The Sigstore client conformance suite's verification cases, run offline against
# imagelock's verifier: the `sigstore-conformance` example (tests/sigstore/conformance.rs)
# is the suite's entrypoint, and pytest runs in a fresh network namespace (`unshare -n`),
# so a case that reached for the network would fail. The suite lives outside the repository,
# at ../shared/sigstore-conformance (override with SIGSTORE_CONFORMANCE); its Python
# dependencies go into a venv in the target directory. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
suite=${SIGSTORE_CONFORMANCE:-$repo/../shared/sigstore-conformance}
target=${CARGO_TARGET_DIR:-$repo/target}
venv=$target/sigstore-conformance-venv

(cd "$repo" && cargo build --locked --quiet --example sigstore-conformance)
entrypoint=$target/debug/examples/sigstore-conformance

# (Re)install the suite's pinned, hash-checked requirements when they change.
if ! cmp -s "$suite/requirements.txt" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --require-hashes -r "$suite/requirements.txt"
  cp "$suite/requirements.txt" "$venv/requirements.txt"
fi

# No network: root gets a bare network namespace; others map themselves to root first.
if [ "$(id -u)" -eq 0 ]; then offline=(unshare --net); else offline=(unshare --map-root-user --net); fi
cd "$suite"
# The suite is shared and read-only to us: no .pytest_cache, no __pycache__ in it.
PYTHONDONTWRITEBYTECODE=1 exec "${offline[@]}" "$venv/bin/pytest" test --skip-signing \
  --entrypoint="$entrypoint" -p no:cacheprovider "$@"
