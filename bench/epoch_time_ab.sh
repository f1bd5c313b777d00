#!/bin/bash
# Epoch seconds of `train.py CONFIG` at two commits, alternated A, B, A, B, ... (issue 17: "epochs no more than
# 5 % slower"). Run alone on the machine; prints each run's epoch times from its metrics.jsonl, and the command.
#
#   bench/epoch_time_ab.sh COMMIT_A COMMIT_B [ROUNDS] [EPOCHS] [CONFIG] [KEY=VALUE ...]
#   e.g. bench/epoch_time_ab.sh 3bda441 HEAD 2 2 configs/conll2003.yaml data.train=../shared/data/conll2003/train.txt \
#        data.dev=../shared/data/conll2003/dev.txt data.test=../shared/data/conll2003/test.txt
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
a=$1 b=$2 rounds=${3:-2} epochs=${4:-2} config=${5:-configs/conll2003.yaml}
shift $(($# < 5 ? $# : 5))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for side in a b; do
    mkdir "$work/$side"
    git -C "$repo" archive "${!side}" | tar -x -C "$work/$side"
done
echo "command: bench/epoch_time_ab.sh $a $b $rounds $epochs $config $*"
for round in $(seq "$rounds"); do
    for side in a b; do
        out="$work/run-$side$round"
        # from the repository: KEY=VALUE paths are relative to it; the code and the config are the commit's
        (cd "$repo" && "$repo/.venv/bin/python" "$work/$side/train.py" "$work/$side/$config" "$@" training.epochs="$epochs" \
            output.progress=false output.dir="$out" > "$out.log" 2>&1)
        seconds=$("$repo/.venv/bin/python" -c "import json, sys; print(' '.join(f\"{json.loads(l)['seconds']:.1f}\" for l in open(sys.argv[1])))" "$out/metrics.jsonl")
        echo "${!side} round $round: epoch seconds $seconds"
    done
done
