#!/bin/bash
# amber benchmarks: each figure beside a baseline measured in the same run,
# as the median of RUNS runs (interleaved, so noise hits both alike), and
# their ratio. Absolute seconds are printed for context only: these
# machines are noisy; quote the ratios.
#
# Corpus: a docker-save tarball of an image whose single layer is the Go
# toolchain tree (/usr/local/go, ~17k files, ~250 MB), made with
# tar | docker import; cached in bench/out.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
CORPUS_DIR=${CORPUS_DIR:-/usr/local/go}
mkdir -p "$OUT"
# A module of its own, so that go vet ./... and go test ./... of amber
# never walk the extracted corpus.
[ -f "$OUT/go.mod" ] || printf 'module amber.bench/out\n' > "$OUT/go.mod"
cd "$OUT"

if [ ! -s corpus.tar ]; then
	echo "building the corpus image from $CORPUS_DIR ..." >&2
	tar -C "$(dirname "$CORPUS_DIR")" -c "$(basename "$CORPUS_DIR")" | docker import - amber-bench-corpus:1 >/dev/null
	docker save -o corpus.tar amber-bench-corpus:1
fi
files=$(tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -t | wc -l || true)
echo "corpus: $(du -m corpus.tar | cut -f1) MB docker-save tarball, $files entries in its layer"

# time_of CMD...: wall seconds and max RSS (KB) of one run -> "secs rss"
time_of() {
	/usr/bin/time -o "$OUT/.time" -f '%e %M' "$@" >/dev/null 2>"$OUT/.stderr" || { echo "failed: $*" >&2; cat "$OUT/.stderr" >&2; exit 1; }
	tail -1 "$OUT/.time"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
max() { sort -n | tail -1; }

declare -A T R
add() { T[$1]+="$2 "; R[$1]+="$3 "; }

cat corpus.tar >/dev/null # warm the page cache for both sides alike
for i in $(seq "$RUNS"); do
	rm -f base.tar.zst c.tar.zst c.tar.zst.*
	read -r s m < <(time_of zstd -3 -T0 -q -f corpus.tar -o base.tar.zst); add zstd "$s" "$m"
	read -r s m < <(time_of "$AMBER" capture image corpus.tar -o c.tar.zst); add capture "$s" "$m"
	read -r s m < <(time_of sh -c 'zstd -dc c.tar.zst | openssl dgst -sha256'); add zcat_sha "$s" "$m"
	read -r s m < <(time_of "$AMBER" verify --no-log c.tar.zst); add verify "$s" "$m"
	read -r s m < <(time_of "$AMBER" ls c.tar.zst); add ls "$s" "$m"
	read -r s m < <(time_of "$AMBER" ls -r c.tar.zst images/amber-bench-corpus_1/rootfs); add lsr "$s" "$m"
done
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
rss() { echo "${R[$1]}" | tr ' ' '\n' | grep . | max; }

size_amber=$(stat -c %s c.tar.zst)
size_zstd=$(stat -c %s base.tar.zst)

status() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

printf '\n%-44s %10s %10s %7s %8s %s\n' "figure (median of $RUNS runs)" amber baseline ratio target ""
line() { printf '%-44s %10s %10s %7s %8s %s\n' "$@"; }
r=$(ratio "$(med capture)" "$(med zstd)");      line "capture time, vs zstd -3 -T0 (s)" "$(med capture)" "$(med zstd)" "$r" "<=1.50" "$(status "$r" 1.5)"
r=$(ratio "$size_amber" "$size_zstd");          line "archive size, vs zstd -3 output (bytes)" "$size_amber" "$size_zstd" "$r" "<=1.10" "$(status "$r" 1.10)"
r=$(ratio "$(med verify)" "$(med zcat_sha)");   line "verify, vs zstd -dc | openssl sha256 (s)" "$(med verify)" "$(med zcat_sha)" "$r" "<=1.50" "$(status "$r" 1.5)"
line "ls ARCHIVE (s)" "$(med ls)" "-" "-" "<=0.2s" "$(status "$(med ls)" 0.2)"
line "ls ARCHIVE peak RSS (MB)" "$(( $(rss ls) / 1024 ))" "-" "-" "<=100" "$(status $(( $(rss ls) / 1024 )) 100)"
line "ls -r rootfs, all files (s)" "$(med lsr)" "-" "-" "<=0.2s" "$(status "$(med lsr)" 0.2)"
line "ls -r rootfs peak RSS (MB)" "$(( $(rss lsr) / 1024 ))" "-" "-" "<=100" "$(status $(( $(rss lsr) / 1024 )) 100)"
line "capture peak RSS (MB)" "$(( $(rss capture) / 1024 ))" "$(( $(rss zstd) / 1024 ))" "-" "-" ""
line "verify peak RSS (MB)" "$(( $(rss verify) / 1024 ))" "-" "-" "-" ""
