#!/usr/bin/env bash
# Headless screenshots of the Dagster UI, to look at after changing the definitions.
# Start the UI first (`.venv/bin/warehouse ui`), then: bash docs/ui/screenshots.sh [OUT_DIR]
# The address is 0.0.0.0 rather than 127.0.0.1: the UI shows a newsletter dialog on
# loopback origins that would cover the page in every picture.
set -euo pipefail
out="${1:-$(dirname "$0")}"
base="${DAGSTER_UI:-http://0.0.0.0:3000}"
shot() {  # path, file, window size
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$3" \
    --virtual-time-budget=30000 --screenshot="$out/$2" "$base/$1" 2>/dev/null
  echo "$out/$2"
}
shot "asset-groups" asset_graph.png 1800,1000
shot "assets/marts/fleet_daily" asset_fleet_daily.png 1800,1500
shot "assets/marts/fleet_daily?view=events" materialization_fleet_daily.png 1800,1400
shot "automation" automation.png 1800,700
