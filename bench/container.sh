#!/bin/bash
# amber capture container, against docker export | zstd -3 -T0 of the same
# container, in the same run (median of RUNS, interleaved). The container
# is made from the corpus image (see run.sh) and has 100 of its files
# replaced (docker cp), so the capture stores the image's layer, a changes
# layer of 100 files, and compares them.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
docker image inspect amber-bench-corpus:1 >/dev/null 2>&1 || docker load -q -i corpus.tar >/dev/null

CTR=amber-bench-ctr
docker rm -f "$CTR" >/dev/null 2>&1 || true
docker create --name "$CTR" amber-bench-corpus:1 /go/bin/go version >/dev/null
trap 'docker rm -f "$CTR" >/dev/null 2>&1 || true; rm -rf "$OUT/changed" "$OUT/ctrtree"' EXIT
# 100 files of the tree, each replaced by different content.
rm -rf changed && mkdir changed
tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -t | grep '^go/src/.*\.go$' | head -100 > changed.list || true
[ "$(wc -l < changed.list)" = 100 ] || { echo "could not list 100 files of the corpus" >&2; exit 1; }
while read -r f; do
	mkdir -p "changed/$(dirname "$f")"
	printf 'changed by the benchmark: %s\n' "$f" > "changed/$f"
done < changed.list
docker cp changed/go/. "$CTR":/go/
echo "container: $(docker diff "$CTR" | wc -l) changes listed by the engine"

time_of() {
	/usr/bin/time -o "$OUT/.time" -f '%e %M' "$@" >/dev/null 2>"$OUT/.stderr" || { echo "failed: $*" >&2; cat "$OUT/.stderr" >&2; exit 1; }
	tail -1 "$OUT/.time"
}
# For amber diff: the corpus tree and the container's tree extracted to
# local disk, for diff -rq between them.
if [ ! -d native ]; then
	mkdir -p native
	tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -x -C native || true
fi
rm -rf ctrtree && mkdir ctrtree && docker export "$CTR" | tar -x -C ctrtree

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
max() { sort -n | tail -1; }
declare -A T R
add() { T[$1]+="$2 "; R[$1]+="$3 "; }
docker export "$CTR" >/dev/null # warm caches for both sides alike
for i in $(seq "$RUNS"); do
	rm -f ctr.tar.zst ctr.tar.zst.* ctrx.tar.zst ctrx.tar.zst.*
	read -r s m < <(time_of sh -c "docker export $CTR | zstd -3 -T0 -q > /dev/null"); add export "$s" "$m"
	read -r s m < <(time_of "$AMBER" capture container "$CTR" -o ctr.tar.zst); add capture "$s" "$m"
	read -r s m < <(time_of "$AMBER" capture container "$CTR" --route export -o ctrx.tar.zst); add capturex "$s" "$m"
	read -r s m < <(time_of "$AMBER" diff ctr.tar.zst "containers/$CTR"); add diff "$s" "$m"
	read -r s m < <(time_of sh -c 'diff -rq native/go ctrtree/go >/dev/null; [ $? -le 1 ]'); add diffrq "$s" "$m"
done
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
rss() { echo "${R[$1]}" | tr ' ' '\n' | grep . | max; }
status() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
changes=$("$AMBER" ls --json ctr.tar.zst | grep -o '"changed": [0-9]*' | head -1 || true)
printf '\n%-52s %10s %10s %7s %8s %s\n' "figure (median of $RUNS runs)" amber baseline ratio target ""
line() { printf '%-52s %10s %10s %7s %8s %s\n' "$@"; }
r=$(ratio "$(med capture)" "$(med export)");  line "capture container, vs docker export | zstd -3 (s)" "$(med capture)" "$(med export)" "$r" "<=1.50" "$(status "$r" 1.5)"
r=$(ratio "$(med capturex)" "$(med export)"); line "  same, --route export (engine stream) (s)" "$(med capturex)" "$(med export)" "$r" "-" ""
r=$(ratio "$(med diff)" "$(med diffrq)");      line "amber diff container vs pristine, vs diff -rq (s)" "$(med diff)" "$(med diffrq)" "$r" "<=0.50" "$(status "$r" 0.5)"
line "  amber diff, absolute (s)" "$(med diff)" "-" "-" "<=0.5s" "$(status "$(med diff)" 0.5)"
line "  amber diff peak RSS (MB)" "$(( $(rss diff) / 1024 ))" "-" "-" "-" ""
echo "amber diff lists $("$AMBER" diff ctr.tar.zst "containers/$CTR" | wc -l) paths; diff -rq $(diff -rq native/go ctrtree/go | wc -l)"
line "capture container peak RSS (MB)" "$(( $(rss capture) / 1024 ))" "-" "-" "-" ""
line "  --route export peak RSS (MB)" "$(( $(rss capturex) / 1024 ))" "-" "-" "-" ""
echo "changes found by content: $changes"
