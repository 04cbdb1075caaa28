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
