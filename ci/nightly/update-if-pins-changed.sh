#!/usr/bin/env bash
# Nightly CI: run `make update` only when the release pins changed since the last successful run.
#
# How a change is detected: `make pins-fingerprint` prints the sha256 of data `releases` and
# `nextcloud_upgrade_path` (canonical JSON, so comments and key order do not count). After a
# successful `make update`, this script stores it in $PINS_STATE (a file the CI keeps between
# pipelines: GitLab cache, Forgejo actions/cache). Equal fingerprints: nothing to do. A failed
# update (rolled back) stores nothing, so the next night tries again.
# A lost cache is harmless: `make update` compares each host's release markers with the pins
# itself and finds nothing to do when everything already runs its pin.
set -euo pipefail
: "${INVENTORY:?set INVENTORY to your inventory, e.g. inventory/production.py}"
PINS_STATE="${PINS_STATE:-.assotic-ci/pins-applied.sha256}"

current=$(make -s pins-fingerprint INVENTORY="$INVENTORY")
applied=$(cat "$PINS_STATE" 2>/dev/null || echo none)
echo "pins: current ${current:0:12}, last applied ${applied:0:12}"
if [ "$current" = "$applied" ]; then
    echo "pins unchanged since the last successful update: nothing to update"
    exit 0
fi
make update INVENTORY="$INVENTORY"
mkdir -p "$(dirname "$PINS_STATE")"
echo "$current" > "$PINS_STATE"
echo "pins ${current:0:12} applied and recorded in $PINS_STATE"
