#!/bin/bash
# make soak: mount the corpus archive and run 16 concurrent readers (grep -r,
# find -printf, sha256sum of random files checked against the index,
# random-offset reads compared with the same bytes of the extracted tree)
# for SOAK_SECONDS (default 120). Afterwards: every check passed, and the
# mount's RSS and open file descriptors did not grow past their level after
# a first full walk. Prints the figures; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
SECS=${SOAK_SECONDS:-120}
cd "$OUT"
[ -s corpus.tar ] || { echo "soak: run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
[ -s c.tar.zst ] || "$AMBER" capture image corpus.tar -o c.tar.zst >/dev/null
if [ ! -d native ]; then
	mkdir -p native
	tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -x -C native || true
fi
M=$OUT/mnt-soak
mkdir -p "$M"
"$AMBER" umount "$M" >/dev/null 2>&1 || true
"$AMBER" mount --background --no-log c.tar.zst "$M" >/dev/null
trap '"$AMBER" umount "$M" >/dev/null 2>&1 || true' EXIT
ROOT=$M/images/amber-bench-corpus_1/rootfs
pid=$(pgrep -f "amber mount --no-log c.tar.zst $M" | head -1)
"$AMBER" ls --sha256sum c.tar.zst images/amber-bench-corpus_1/rootfs > sums.txt
mapfile -t FILES < <(awk '{print $2}' sums.txt)
# A first full walk: what the kernel keeps referenced from now on.
find "$ROOT" -printf '%s %m %u\n' >/dev/null
grep -r AMBER_NOT_THERE "$ROOT" >/dev/null || true
rss0=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
# Open files other than /dev/fuse and the cgroup CPU files: go-fuse clones
# the device for more reader threads under load (bounded), and the Go
# runtime opens the cgroup files once to follow CPU limits; neither leaks.
nfds() { ls -l /proc/$pid/fd | awk '{print $NF}' | grep -Evc '^(/dev/fuse|/sys/fs/cgroup/.*)$'; }
fds0=$(nfds)
end=$(( $(date +%s) + SECS ))
fail=$OUT/soak.fail
rm -f "$fail"
reader() {
	local kind=$1 n=0
	while [ "$(date +%s)" -lt "$end" ]; do
		case $kind in
		grep) grep -r AMBER_NOT_THERE "$ROOT" >/dev/null || true ;;
		find) find "$ROOT" -printf '%s %m %u\n' >/dev/null ;;
		sum)
			for _ in 1 2 3 4 5 6 7 8; do
				l=$(shuf -n 1 sums.txt)
				(cd "$ROOT" && echo "$l" | sha256sum -c --quiet --strict - >/dev/null 2>&1) || echo "sha256 mismatch: $l" >> "$fail"
			done ;;
		rand)
			f=${FILES[$(( (RANDOM * 32768 + RANDOM) % ${#FILES[@]} ))]}
			size=$(stat -c %s "native/$f")
			[ "$size" -gt 0 ] || continue
			off=$(( (RANDOM * 32768 + RANDOM) % size ))
			cmp -s <(tail -c +$((off + 1)) "$ROOT/$f" | head -c 4096) <(tail -c +$((off + 1)) "native/$f" | head -c 4096) || echo "bytes differ: $f at $off" >> "$fail" ;;
		esac
		n=$((n + 1))
	done
	echo "$kind $n"
}
pids=()
for k in grep grep find find sum sum sum sum rand rand rand rand rand rand rand rand; do
	reader "$k" > "$OUT/soak.$k.$RANDOM" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
rss1=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
fds1=$(nfds)
fuse1=$(ls -l /proc/$pid/fd | awk '{print $NF}' | grep -c '^/dev/fuse$')
echo "soak: $SECS s, 16 readers: $(cat "$OUT"/soak.*.* | awk '{a[$1]+=$2} END {for (k in a) printf "%s %d  ", k, a[k]}')"
rm -f "$OUT"/soak.grep.* "$OUT"/soak.find.* "$OUT"/soak.sum.* "$OUT"/soak.rand.*
echo "soak: RSS after the first walk $((rss0 / 1024)) MB, at the end $((rss1 / 1024)) MB, peak $((hwm / 1024)) MB; open fds (besides /dev/fuse, cgroup) $fds0 -> $fds1, /dev/fuse $fuse1"
ok=1
if [ -s "$fail" ]; then echo "soak: FAILED checks:"; head -20 "$fail"; ok=0; fi
if [ "$fds1" -gt "$fds0" ]; then echo "soak: open fds grew"; ok=0; fi
if [ "$rss1" -gt $(( rss0 * 3 / 2 + 16384 )) ]; then echo "soak: RSS grew"; ok=0; fi
[ "$ok" = 1 ] && echo "soak: ok" || exit 1
