#!/bin/bash
# Paired A/B of CPU per request: A = a commit (default HEAD) in a temporary worktree,
# B = the working tree; runs alternate so that the machine's drift hits both alike.
#   bash bench/experiments/ab.sh json 16 [rounds] [commit]
set -e
mode=$1; conc=$2; rounds=${3:-3}; ref=${4:-HEAD}
repo=$(cd "$(dirname "$0")/../.." && pwd)
base=$(mktemp -d)/base
git -C "$repo" worktree add -q --detach "$base" "$ref"
trap 'git -C "$repo" worktree remove --force "$base"' EXIT
measure() { python "$repo/bench/experiments/cpu_per_request.py" "$mode" "$conc" 2>/dev/null \
  | head -1 | sed -E 's/.* ([0-9]+) req\/s.*= ([0-9]+) us.*/\2 us (\1 req\/s)/'; }
for i in $(seq "$rounds"); do
  a=$(PYTHONPATH="$base/src" measure)
  b=$(measure)
  echo "round $i: A($ref) $a   B(working tree) $b"
done
