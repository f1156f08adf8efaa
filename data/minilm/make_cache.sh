#!/usr/bin/env bash
# Regenerates the shipped MiniLM cache of the sparse methods (issue 13): the corpus
# sentences and vocabulary words of `lapis_models::data::text`, embedded by lapis' own
# all-MiniLM-L6-v2 forward pass and stored as f16. Needs the weights: `lapis fetch minilm`.
# Run from the workspace root: bash data/minilm/make_cache.sh [MODEL_DIR]
set -euo pipefail
lapis=(cargo run --release -q -p lapis-models --)
model=()
if [ $# -ge 1 ]; then model=(--model "$1"); fi
"${lapis[@]}" corpus sentences --out data/minilm/sentences.txt --max 6000 --seed 0
"${lapis[@]}" corpus words --out data/minilm/words.txt --max 500
"${lapis[@]}" embed data/minilm/words.txt --out data/minilm/words.safetensors --f16 --batch 64 --quiet "${model[@]}"
"${lapis[@]}" embed data/minilm/sentences.txt --out data/minilm/sentences.safetensors --f16 --batch 64 --quiet "${model[@]}"
