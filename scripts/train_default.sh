#!/usr/bin/env bash
# Rebuild the shipped model (models/default) from the bundled corpus (same thresholds and evaluation;
# the weight bytes can differ in the last bits of float rounding),
# and evaluate it on the held-out test split beside its blind second coder (models/default/evaluation/).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1795219200}  # fixed creation time: same data, same manifest
"$BIN/discourse" train corpora/training/train.csv --codebook corpora/codebook.yaml --encoder all-mpnet-base-v2 --encoder-backend torch -o models/default
"$BIN/discourse" evaluate --model models/default --test corpora/test/test.csv \
  --second-coder corpora/src/double_coding/test_second_coder.csv --encoder-backend torch -o models/default/evaluation
