#!/bin/bash
# The examiner's report (issue 19): amber report of the corpus archive
# (the corpus image captured from bench/run.sh's corpus.tar into an archive
# of this script's own, rp.tar.zst, so that other benchmarks rewriting
# c.tar.zst do not change it), against amber verify of the same archive:
# the report runs that verification, so verify is its floor. Target: the
# report <= 2 s. Also with --files (every file of the layer, ~17k rows).
# Median of RUNS interleaved runs after a warm-up; --no-log on both sides
# so that the custody log stays the same from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
if [ ! -s rp.tar.zst ]; then "$AMBER" capture image corpus.tar -o rp.tar.zst >/dev/null; fi
rm -f rp-report.html rp-files.html

# Interleaved (verify, report, report --files, verify, ...): the machine's
# noise hits both sides alike.
secs() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) m = a[(NR+1)/2]; else m = (a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }
declare -A T
add() { T[$1]+="$2 "; }
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
"$AMBER" report --no-log rp.tar.zst -o rp-report.html >/dev/null # warm-up
for i in $(seq "$RUNS"); do
	add verify "$(secs "$AMBER" verify --no-log rp.tar.zst)"
	add report "$(secs "$AMBER" report --no-log rp.tar.zst -o rp-report.html)"
	add files "$(secs "$AMBER" report --no-log --files rp.tar.zst -o rp-files.html)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ok() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
line() { printf '%-44s %9s %9s %7s %8s %s\n' "$@"; }
files=$(grep -c '<tr class="file">' rp-files.html || true)
printf '\n%-44s %9s %9s %7s %8s\n' "figure (median of $RUNS runs, seconds)" report verify ratio target
line "report, vs verify of the same archive" "$(med report)" "$(med verify)" "$(ratio "$(med report)" "$(med verify)")" "<=2s" "$(ok "$(med report)" 2)"
line "report --files ($files files), vs verify" "$(med files)" "$(med verify)" "$(ratio "$(med files)" "$(med verify)")" "-" ""
printf '%-44s %9s\n' "report size (bytes): HTML, with --files" "$(stat -c %s rp-report.html), $(stat -c %s rp-files.html)"
