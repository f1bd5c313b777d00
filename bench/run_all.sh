#!/usr/bin/env bash
# Run the speed benchmarks one after another, alone on the machine, logging each to runs/bench-logs/.
#   bench/run_all.sh TAGGER_RUN_DIR      (a run of configs/conll2003.yaml, e.g. runs/bench-conll2003)
# Needs .venv (make setup) and, for the Flair columns, .bench-venv with flair (see bench/flair_side.py).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:?usage: bench/run_all.sh TAGGER_RUN_DIR}
logs=runs/bench-logs
mkdir -p "$logs"
py=.venv/bin/python
bench() {  # NAME ARGS...: one benchmark under the CPU lock, its output also in $logs/NAME.log
  local name=$1; shift
  echo "== $name"
  flock -x /tmp/ner-cpu.lock "$py" "$@" 2>&1 | tee "$logs/$name.log" | tail -n 12
}
bench lstm_speed bench/lstm_speed.py
bench viterbi_speed bench/viterbi_speed.py
bench train_speed bench/train_speed.py
bench elmo_cache bench/elmo_cache.py --bilm models/lm_reuters
bench tag_speed bench/tag_speed.py "$run_dir" --lines 5000
bench tokenizer_agreement bench/tokenizer_agreement.py ../shared/data/conll2003/test.txt
