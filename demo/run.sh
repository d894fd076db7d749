#!/usr/bin/env bash
# `make demo`: every section of the demo, in order, on the bundled data. Each section checks
# that each command exits with the code it should, so the demo fails loudly if a guarantee breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEMO_OUT=${DEMO_OUT:-demo-out}
export UNCOLLAPSE_CACHE=${UNCOLLAPSE_CACHE:-$DEMO_OUT/cache}
mkdir -p "$DEMO_OUT/reports"
source demo/lib.sh
for section in demo/[0-9][0-9]-*.sh; do
  source "$section"
done
banner "demo finished: every command exited as expected"
