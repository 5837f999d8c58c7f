#!/bin/bash
# Bounded resources (issue 6): peak RSS of capture, verify and mount on
# inputs built to exhaust memory, beside the same command on an input
# 1,000 times smaller (the baseline, same run): the ratio is how much
# memory grows with the input.
#   files: a layer of 1,000,000 empty files (1,000 per directory)
#   zeros: one 10 GB file of zeros (the docker-save tarball is sparse)
#   deep:  a directory chain 100,000 deep (11 GB of PAX path records);
#          amber refuses it (--max-index-mib): the figure is the RSS and
#          time until the refusal
# Inputs are cached in bench/out/bounds. As root (mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}/bounds
mkdir -p "$OUT"
go build -o "$OUT/gen" ./internal/fixture/bounds
cd "$OUT"

declare -A N=([files]=1000000 [zeros]=10000000000 [deep]=100000)
declare -A S=([files]=1000 [zeros]=10000000 [deep]=100)
for k in files zeros deep; do
	[ -s "$k.tar" ] || { echo "generating $k (${N[$k]}) ..." >&2; ./gen "$k" "${N[$k]}" "$k.tar"; }
	[ -s "$k-small.tar" ] || ./gen "$k" "${S[$k]}" "$k-small.tar"
done

# run CMD...: "seconds peakRSS-MB exit"
run() {
	local rc=0
	/usr/bin/time -o .time -f '%e %M' "$@" >.stdout 2>.stderr || rc=$?
	read -r s m < <(tail -1 .time)
	echo "$s $((m / 1024)) $rc"
}
# mounted ARCHIVE CMD...: mounts ARCHIVE at mnt, runs CMD in it, prints
# "seconds mountPeakRSS-MB exit" and unmounts.
mounted() {
	local arch=$1; shift
	mkdir -p mnt
	"$AMBER" mount --background --no-log "$arch" mnt >/dev/null
	# (the mount serving in the background is "amber mount --no-log ...")
	local pid; pid=$(pgrep -f "amber mount --no-log $arch mnt" | head -1)
	local t0 t1 rc=0; t0=$(date +%s.%N)
	(cd mnt && "$@") >/dev/null 2>.stderr || rc=$?
	t1=$(date +%s.%N)
	local hwm; hwm=$(awk '/VmHWM/ {print int($2/1024)}' /proc/"$pid"/status)
	"$AMBER" umount mnt >/dev/null
	echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') $hwm $rc"
}

line() { printf '%-44s %9s %9s %7s %9s %s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
declare -A RES
for k in files zeros deep; do
	for v in "" -small; do
		rm -f "$k$v.tar.zst"*
		RES[cap$k$v]=$(run "$AMBER" capture image "$k$v.tar" -o "$k$v.tar.zst")
		if [ -s "$k$v.tar.zst" ]; then
			RES[ver$k$v]=$(run "$AMBER" verify --no-log "$k$v.tar.zst")
		fi
	done
	[ "$k" = deep ] && grep -o 'too large to index.*' .stderr | cut -c1-160 >&2 || true
done
for v in "" -small; do
	RES[mntfiles$v]=$(mounted "files$v.tar.zst" find images/bounds_files/rootfs -printf '%s %m\n')
	RES[mntzeros$v]=$(mounted "zeros$v.tar.zst" sha256sum images/bounds_zeros/rootfs/zeros)
done

field() { echo "${RES[$1]}" | cut -d' ' -f"$2"; }
printf '\n%-44s %9s %9s %7s %9s %s\n' "peak RSS (MB); baseline: input 1,000x smaller" amber baseline ratio seconds exit
for k in files zeros deep; do
	line "capture $k (${N[$k]})" "$(field cap$k 2)" "$(field cap$k-small 2)" "$(ratio "$(field cap$k 2)" "$(field cap$k-small 2)")" "$(field cap$k 1)" "$(field cap$k 3)"
	[ -n "${RES[ver$k]:-}" ] && line "verify $k" "$(field ver$k 2)" "$(field ver$k-small 2)" "$(ratio "$(field ver$k 2)" "$(field ver$k-small 2)")" "$(field ver$k 1)" "$(field ver$k 3)"
done
line "mount + find -printf over files' rootfs" "$(field mntfiles 2)" "$(field mntfiles-small 2)" "$(ratio "$(field mntfiles 2)" "$(field mntfiles-small 2)")" "$(field mntfiles 1)" "$(field mntfiles 3)"
line "mount + sha256sum of the 10 GB file" "$(field mntzeros 2)" "$(field mntzeros-small 2)" "$(ratio "$(field mntzeros 2)" "$(field mntzeros-small 2)")" "$(field mntzeros 1)" "$(field mntzeros 3)"
echo "(deep: exit 6 is the refusal; its RSS is what the refusal cost)"
