#!/bin/bash
# amber browse (issue 20) on the million-file layer of bench/bounds.sh
# (1,000,000 empty files, 1,000 per directory), in a real terminal (tmux,
# 80x24), each figure beside its baseline from the same run (median of
# RUNS interleaved runs):
#   time to the first screen (the layer's top directory drawn)
#     vs amber ls of that directory                   absolute, < 1 s
#   peak RSS (VmHWM of the amber process) after a filter matching every
#     file (a list of 1,000,000 rows) paged to its end
#     vs amber ls's peak RSS                          absolute, < 200 MB
#   the same over the stage (s; paths matched in every layer)  < 200 MB
# Inputs are cached in bench/out/bounds (shared with bench/bounds.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}/bounds
RUNS=${RUNS:-5}
mkdir -p "$OUT"
cd "$OUT"
if [ ! -s files.tar.zst ]; then
	if [ ! -s files.tar ]; then
		( cd "$OLDPWD" && go build -o "$OUT/gen" ./internal/fixture/bounds )
		echo "generating files (1000000) ..." >&2
		./gen files 1000000 files.tar
	fi
	"$AMBER" capture image files.tar -o files.tar.zst >/dev/null
fi
ARCH=$OUT/files.tar.zst
LAYER=images/bounds_files/layers/0

SOCK=$OUT/browse-tmux.sock
tm() { tmux -S "$SOCK" "$@"; }
cleanup() { tm kill-server 2>/dev/null || true; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) m = a[(NR+1)/2]; else m = (a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }
# until_shows TEXT: poll the screen (every 10 ms, 30 s at most).
until_shows() {
	for _ in $(seq 3000); do
		tm capture-pane -p -t 0 2>/dev/null | grep -qF -- "$1" && return 0
		sleep 0.01
	done
	echo "the terminal never showed $1:" >&2; tm capture-pane -p -t 0 >&2; exit 1
}
amber_pid() {
	local p; p=$(tm list-panes -F '#{pane_pid}')
	# tmux runs the command itself or under a shell.
	[ "$(readlink /proc/"$p"/exe)" = "$(readlink -f "$AMBER")" ] || p=$(pgrep -P "$p" | head -1)
	echo "$p"
}

first=() ls=() rss=() lsrss=() filt=() srss=() sfilt=()

# filter_to_end [KEYS]: in the browse session on screen (after KEYS, e.g. s
# for the stage), filter every file (f*), page through the 1,000,000 rows
# to the end and quit; sets FILT (the filter's seconds) and PEAK (amber's
# peak RSS, MB). Run in this shell, so that a screen never shown exits.
filter_to_end() {
	local pid s e
	pid=$(amber_pid)
	tm send-keys -t 0 ${1:-} Tab /
	until_shows "filter (glob"
	tm send-keys -t 0 -l 'f*'
	s=$EPOCHREALTIME
	tm send-keys -t 0 Enter
	until_shows "1000000 match(es)"
	e=$EPOCHREALTIME
	for _ in $(seq 20); do tm send-keys -t 0 PgDn; done
	tm send-keys -t 0 G
	until_shows "/d0999/f0999999  file"
	PEAK=$(awk '/VmHWM/ {print int($2/1024)}' /proc/"$pid"/status)
	tm send-keys -t 0 q
	for _ in $(seq 500); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
	FILT=$(echo "$e - $s" | bc)
}
for _ in $(seq "$RUNS"); do
	s=$EPOCHREALTIME
	"$AMBER" ls "$ARCH" "$LAYER" >/dev/null
	e=$EPOCHREALTIME
	ls+=("$(echo "$e - $s" | bc)")
	/usr/bin/time -o .time -f '%M' "$AMBER" ls "$ARCH" "$LAYER" >/dev/null
	lsrss+=("$(( $(tail -1 .time) / 1024 ))")

	tm kill-server 2>/dev/null || true
	s=$EPOCHREALTIME
	tm new-session -d -x 80 -y 24 "$AMBER browse $ARCH $LAYER"
	until_shows "d0000"
	e=$EPOCHREALTIME
	first+=("$(echo "$e - $s" | bc)")
	# Every file: 1,000,000 rows, then to the end, a page at a time and
	# at once.
	filter_to_end
	filt+=("$FILT"); rss+=("$PEAK")

	# The same over the stage (s: the layers merged; paths are matched
	# in every layer, deduplicated).
	tm kill-server 2>/dev/null || true
	tm new-session -d -x 80 -y 24 "$AMBER browse $ARCH $LAYER"
	until_shows "d0000"
	filter_to_end s
	sfilt+=("$FILT"); srss+=("$PEAK")
done

F=$(printf '%s\n' "${first[@]}" | median); L=$(printf '%s\n' "${ls[@]}" | median)
R=$(printf '%s\n' "${rss[@]}" | median); LR=$(printf '%s\n' "${lsrss[@]}" | median)
FI=$(printf '%s\n' "${filt[@]}" | median)
SR=$(printf '%s\n' "${srss[@]}" | median); SF=$(printf '%s\n' "${sfilt[@]}" | median)
line() { printf '%-58s %9s %9s %7s %s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
printf '\n%-58s %9s %9s %7s %s\n' "amber browse, 1,000,000-file layer (median of $RUNS)" amber baseline ratio target
line "first screen, s (baseline: amber ls of its top directory)" "$F" "$L" "$(ratio "$F" "$L")" "< 1 s"
line "peak RSS after 1,000,000 rows paged to the end, MB (ls)" "$R" "$LR" "$(ratio "$R" "$LR")" "< 200 MB"
line "the same over the stage (s), MB (ls)" "$SR" "$LR" "$(ratio "$SR" "$LR")" "< 200 MB"
line "filter f* over the layer, s (1,000,000 matches)" "$FI" "-" "-" "-"
line "filter f* over the stage, s" "$SF" "-" "-" "-"
