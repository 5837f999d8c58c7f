#!/bin/bash
# Mount benchmarks (issue: read-only FUSE mount). Against the same tree
# extracted to local disk (native) and squashfuse_ll over mksquashfs -comp
# zstd of it. "cold" runs drop the page cache first and remount the FUSE
# file systems (their own caches included); "warm" runs repeat at once.
# Medians of RUNS runs; ratios against the baseline of the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
# A module of its own, so that go vet ./... and go test ./... of amber
# never walk the extracted corpus.
[ -f "$OUT/go.mod" ] || printf 'module amber.bench/out\n' > "$OUT/go.mod"
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
if [ ! -s c.tar.zst ]; then "$AMBER" capture image corpus.tar -o c.tar.zst >/dev/null; fi
NAME=images/amber-bench-corpus_1
if [ ! -d native ]; then
	mkdir -p native
	layer=$(tar -tf corpus.tar | grep -E '(layer\.tar|blobs/sha256/[0-9a-f]{64})$' | head -1)
	tar -xOf corpus.tar "$layer" | tar -x -C native
	cp -a native native2
fi
[ -s corpus.sqfs ] || mksquashfs native corpus.sqfs -comp zstd -quiet -no-progress >/dev/null
mkdir -p mnt-amber mnt-sq
BIG=go/pkg/tool/linux_amd64/compile

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
umount_all() { "$AMBER" umount mnt-amber >/dev/null 2>&1 || true; fusermount3 -u mnt-sq 2>/dev/null || umount mnt-sq 2>/dev/null || true; }
mount_amber() { "$AMBER" mount --background --no-log c.tar.zst mnt-amber >/dev/null; }
mount_sq() { squashfuse_ll corpus.sqfs mnt-sq; for _ in $(seq 200); do [ -e mnt-sq/go ] && return; sleep 0.01; done; }
# ddsecs: dd's own figure for the copy (from its first read to its last;
# the open, and so the path lookup, before it), the usual measure of a
# sequential read.
ddsecs() { dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i-1) }'; }
# bash's own clock: timing with date(1) counted the start of a date
# process (~10 ms here) in every figure.
secs() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A T
add() { T[$1]+="$2 "; }
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }

trap umount_all EXIT
umount_all
for i in $(seq "$RUNS"); do
	# mount until ready
	drop; add mount_amber "$(secs mount_amber)"; add mount_sq "$(secs mount_sq)"
	# grep -r cold, then warm at once, one file system at a time
	drop; add grep_cold_amber "$(secs grep -r AMBER_NOT_THERE mnt-amber/$NAME/rootfs)"
	add grep_warm_amber "$(secs grep -r AMBER_NOT_THERE mnt-amber/$NAME/rootfs)"
	drop; add grep_cold_sq "$(secs grep -r AMBER_NOT_THERE mnt-sq)"
	add grep_warm_sq "$(secs grep -r AMBER_NOT_THERE mnt-sq)"
	drop; add grep_cold_native "$(secs grep -r AMBER_NOT_THERE native)"
	add grep_warm_native "$(secs grep -r AMBER_NOT_THERE native)"
	# metadata walks, warm (a first walk fills the caches)
	find mnt-amber/$NAME/rootfs mnt-amber/$NAME/stages/0 native native2 -printf '%s %m %u\n' >/dev/null
	add find_amber "$(secs find mnt-amber/$NAME/rootfs -printf '%s %m %u\n')"
	add find_native "$(secs find native -printf '%s %m %u\n')"
	add lslr_amber "$(secs ls -lR mnt-amber/$NAME/rootfs)"
	add lslr_native "$(secs ls -lR native)"
	add diff_amber "$(secs diff -r mnt-amber/$NAME/rootfs mnt-amber/$NAME/stages/0)"
	add diff_native "$(secs diff -r native native2)"
	# and again, with both sides' content in the page cache
	add diffw_amber "$(secs diff -r mnt-amber/$NAME/rootfs mnt-amber/$NAME/stages/0)"
	add diffw_native "$(secs diff -r native native2)"
	# RSS of the amber mount after walking everything
	pid=$(pgrep -f "amber mount --no-log c.tar.zst mnt-amber" | head -1)
	rss=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$pid/status)
	add rss "$rss"
	umount_all
	# RSS after find over everything, on a fresh mount (the issue's figure)
	mount_amber
	find mnt-amber/$NAME/rootfs -printf '%s %m %u\n' >/dev/null
	pid=$(pgrep -f "amber mount --no-log c.tar.zst mnt-amber" | head -1)
	add rss_find "$(awk '/VmHWM/ {print int($2/1024)}' /proc/$pid/status)"
	umount_all
	# sequential read of a 25 MB file, cold: dd's own time, and the time
	# of the whole command (process start and the path's lookup included)
	mount_amber; mount_sq; drop
	add seqall_amber "$(secs stat mnt-amber/$NAME/rootfs/$BIG)"
	add seq_amber "$(ddsecs mnt-amber/$NAME/rootfs/$BIG)"
	drop; add seqall_sq "$(secs stat mnt-sq/$BIG)"
	add seq_sq "$(ddsecs mnt-sq/$BIG)"
	drop; add seq_native "$(ddsecs native/$BIG)"
	umount_all
	mount_amber; mount_sq; drop
	add seqcmd_amber "$(secs dd if=mnt-amber/$NAME/rootfs/$BIG of=/dev/null bs=1M)"
	drop; add seqcmd_sq "$(secs dd if=mnt-sq/$BIG of=/dev/null bs=1M)"
	umount_all
done
size=$(stat -c %s native/$BIG)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ok() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
line() { printf '%-46s %9s %9s %7s %8s %s\n' "$@"; }
printf '\n%-46s %9s %9s %7s %8s\n' "figure (median of $RUNS runs, seconds)" amber baseline ratio target
line "mount until ready (s), vs squashfuse_ll" "$(med mount_amber)" "$(med mount_sq)" "$(ratio "$(med mount_amber)" "$(med mount_sq)")" "<=0.1s" "$(ok "$(med mount_amber)" 0.1)"
r=$(ratio "$(med grep_cold_amber)" "$(med grep_cold_sq)"); line "grep -r cold, vs squashfuse_ll cold" "$(med grep_cold_amber)" "$(med grep_cold_sq)" "$r" "<=1.0" "$(ok "$r" 1.0)"
r=$(ratio "$(med grep_warm_amber)" "$(med grep_warm_native)"); line "grep -r warm, vs native warm" "$(med grep_warm_amber)" "$(med grep_warm_native)" "$r" "<=1.2" "$(ok "$r" 1.2)"
line "  (grep -r cold native; warm squashfuse_ll)" "-" "$(med grep_cold_native)" "-" "-" "$(med grep_warm_sq)"
r=$(ratio "$(med find_amber)" "$(med find_native)"); line "find -printf '%s %m %u', vs native" "$(med find_amber)" "$(med find_native)" "$r" "<=2.0" "$(ok "$r" 2.0)"
r=$(ratio "$(med lslr_amber)" "$(med lslr_native)"); line "ls -lR, vs native" "$(med lslr_amber)" "$(med lslr_native)" "$r" "<=2.0" "$(ok "$r" 2.0)"
r=$(ratio "$(med diff_amber)" "$(med diff_native)"); line "diff -r of two views, first run, vs native" "$(med diff_amber)" "$(med diff_native)" "$r" "<=1.5" "$(ok "$r" 1.5)"
r=$(ratio "$(med diffw_amber)" "$(med diffw_native)"); line "diff -r of two views, warm, vs native warm" "$(med diffw_amber)" "$(med diffw_native)" "$r" "<=1.5" "$(ok "$r" 1.5)"
mibs() { awk -v s="$size" -v t="$1" 'BEGIN { printf "%.0f", s / 1048576 / t }'; }
line "sequential read 25 MB cold (MiB/s)" "$(mibs "$(med seq_amber)")" "$(mibs "$(med seq_sq)")" "-" ">=300" "$(awk -v m="$(mibs "$(med seq_amber)")" 'BEGIN { print (m >= 300) ? "ok" : "UNDER" }')"
line "  (native cold, MiB/s)" "-" "$(mibs "$(med seq_native)")" "-" "-" ""
line "  (whole dd command, lookup included, MiB/s)" "$(mibs "$(med seqcmd_amber)")" "$(mibs "$(med seqcmd_sq)")" "-" "-" ""
line "  (cold lookup of its path: stat, s)" "$(med seqall_amber)" "$(med seqall_sq)" "$(ratio "$(med seqall_amber)" "$(med seqall_sq)")" "-" ""
m=$(echo "${T[rss_find]}" | tr ' ' '\n' | grep . | sort -n | tail -1)
line "amber mount peak RSS after find over all (MB)" "$m" "-" "-" "<=100" "$(awk -v m="$m" 'BEGIN { print (m <= 100) ? "ok" : "OVER" }')"
line "  (peak RSS after all the walks above, MB)" "$(echo "${T[rss]}" | tr ' ' '\n' | grep . | sort -n | tail -1)" "-" "-" "-" ""
