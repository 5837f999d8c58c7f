#!/bin/bash
# amber export --format dfxml (issue 19) of the corpus archive (run.sh
# makes it: one image whose single layer is the Go toolchain tree, ~17k
# files) against amber ls -r --json of the same tree
# (images/amber-bench-corpus_1/layers/0, and any other layer the DFXML
# lists: every entry of each layer with its SHA-256, what the DFXML
# lists), median of RUNS interleaved runs, both to /dev/null. Target: <= 1.5x. Also the DFXML's size and the
# peak RSS of both (the document is streamed: RSS must not grow with it).
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
[ -f "$OUT/go.mod" ] || printf 'module amber.bench/out\n' > "$OUT/go.mod"
cd "$OUT"
if [ ! -s c.tar.zst ]; then
	[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
	"$AMBER" capture image corpus.tar -o c.tar.zst >/dev/null
fi
# The same trees: every layer the DFXML lists as a volume (the corpus
# image's layer; a container's changes too when c.tar.zst holds one).
mapfile -t TREES < <("$AMBER" export c.tar.zst --format dfxml | sed -n 's#^ *<ftype_str>OCI layer tar \([^,<]*\).*#\1#p')
[ "${#TREES[@]}" -gt 0 ] || { echo "no volumes in the DFXML of c.tar.zst" >&2; exit 1; }
lsr() { for t in "${TREES[@]}"; do "$AMBER" ls -r --json c.tar.zst "$t" || return 1; done; }

# time_of CMD...: wall seconds and max RSS (KB) of one run -> "secs rss"
time_of() {
	/usr/bin/time -o "$OUT/.time" -f '%e %M' "$@" >/dev/null 2>"$OUT/.stderr" || { echo "failed: $*" >&2; cat "$OUT/.stderr" >&2; exit 1; }
	tail -1 "$OUT/.time"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
max() { sort -n | tail -1; }
declare -A T R
add() { T[$1]+="$2 "; R[$1]+="$3 "; }
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
rss() { echo "${R[$1]}" | tr ' ' '\n' | grep . | max; }

cat c.tar.zst >/dev/null # warm the page cache for both sides alike
"$AMBER" export c.tar.zst --format dfxml >/dev/null
for i in $(seq "$RUNS"); do
	read -r s m < <(time_of "$AMBER" export c.tar.zst --format dfxml); add dfxml "$s" "$m"
	read -r s m < <(time_of bash -c "$(declare -p AMBER TREES); $(declare -f lsr); lsr"); add lsr "$s" "$m"
done
files=$("$AMBER" export c.tar.zst --format dfxml | grep -c '<fileobject>')
bytes=$("$AMBER" export c.tar.zst --format dfxml | wc -c)

status() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
printf '\n%-52s %10s %10s %7s %8s %s\n' "figure (median of $RUNS runs)" amber baseline ratio target ""
line() { printf '%-52s %10s %10s %7s %8s %s\n' "$@"; }
echo "trees: ${TREES[*]}"
r=$(ratio "$(med dfxml)" "$(med lsr)"); line "export --format dfxml, vs ls -r --json of each (s)" "$(med dfxml)" "$(med lsr)" "$r" "<=1.50" "$(status "$r" 1.5)"
line "export --format dfxml peak RSS, vs ls -r --json (MB)" "$(( $(rss dfxml) / 1024 ))" "$(( $(rss lsr) / 1024 ))" "-" "-" ""
line "DFXML: fileobjects, bytes" "$files" "$bytes" "-" "-" ""
