#!/usr/bin/env bash
# The main job behind `make demo`: check the data, then train / serve whatever the project has so far.
# Public data sets are used when ../shared/datasets (or SALESML_DATA_DIR) is present; otherwise the synthetic
# organisation (generated, seeded) is the default data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

DATA_ROOT="${SALESML_DATA_DIR:-../shared/datasets}"
if [ -d "$DATA_ROOT" ]; then
  FORECAST_DATASET="${DEMO_FORECAST_DATASET:-walmart}"
  CHURN_DATASET="${DEMO_CHURN_DATASET:-cdnow}"
  LEADS_DATASET="${DEMO_LEADS_DATASET:-bank-marketing}"
else
  echo "No public data at $DATA_ROOT: using the SYNTHETIC sales organisation for every model."
  FORECAST_DATASET=synthetic; CHURN_DATASET=synthetic; LEADS_DATASET=synthetic
fi

for ds in $(printf '%s\n' "$FORECAST_DATASET" "$CHURN_DATASET" "$LEADS_DATASET" synthetic | sort -u); do
  echo "== salesml data check $ds"
  "$BIN/salesml" data check "$ds"
done

echo "== salesml train sales --dataset $FORECAST_DATASET --promote"
"$BIN/salesml" train sales --dataset "$FORECAST_DATASET" --promote

echo "== salesml train leads --dataset $LEADS_DATASET --promote"
"$BIN/salesml" train leads --dataset "$LEADS_DATASET" --promote
mkdir -p out
echo "== salesml score leads --dataset $LEADS_DATASET --out out/lead_scores.parquet"
"$BIN/salesml" score leads --dataset "$LEADS_DATASET" --out out/lead_scores.parquet

echo "== salesml train churn --dataset $CHURN_DATASET --promote"
"$BIN/salesml" train churn --dataset "$CHURN_DATASET" --promote
mkdir -p out
echo "== salesml score churn --dataset $CHURN_DATASET --out out/churn_scores.parquet"
"$BIN/salesml" score churn --dataset "$CHURN_DATASET" --out out/churn_scores.parquet

# --- serve the champions -------------------------------------------------------------------------------
PORT="${SALESML_PORT:-3000}"
echo "== salesml serve --port $PORT --sales $FORECAST_DATASET --churn $CHURN_DATASET --leads $LEADS_DATASET"
"$BIN/salesml" serve --port "$PORT" --sales "$FORECAST_DATASET" --churn "$CHURN_DATASET" --leads "$LEADS_DATASET" > out/serve.log 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null' INT TERM EXIT
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then echo "the service failed to start; see out/serve.log"; tail -30 out/serve.log; exit 1; fi
  sleep 1
done
echo "== one working curl per endpoint (each was just tried):"
"$BIN/python" scripts/demo_curls.py --url "http://127.0.0.1:$PORT"
echo "The service is running on http://127.0.0.1:$PORT (OpenAPI: /docs.json; the planner's page: http://127.0.0.1:$PORT/ui/). Ctrl-C stops it."
wait "$SERVER"
