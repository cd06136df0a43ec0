#!/usr/bin/env bash
# Builds the browser libraries of the topology page (/ui/, doc/ui.md):
# installs tools/ui/package-lock.json's exact versions with npm and copies
# their browser builds into calipso_agent/ui/vendor/, which calipso-api
# serves. Neither node_modules nor vendor/ is committed (.gitignore).
# Run by the install step (doc/install.md), tools/run-calipso and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCE=tools/ui
VENDOR=calipso_agent/ui/vendor

command -v npm >/dev/null || {
    echo "build-ui: npm is needed (Debian: apt-get install -y npm)" >&2
    exit 1
}
npm ci --prefix "$SOURCE" --no-audit --no-fund --ignore-scripts --loglevel=error

mkdir -p "$VENDOR"
modules="$SOURCE/node_modules"
install -m 0644 "$modules/cytoscape/dist/cytoscape.min.js" "$VENDOR/cytoscape.min.js"
install -m 0644 "$modules/dagre/dist/dagre.min.js" "$VENDOR/dagre.min.js"
install -m 0644 "$modules/cytoscape-dagre/cytoscape-dagre.js" "$VENDOR/cytoscape-dagre.js"
echo "build-ui: $(ls "$VENDOR" | wc -l) files in $VENDOR"
