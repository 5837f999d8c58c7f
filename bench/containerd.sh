#!/bin/bash
# amber capture container from containerd, against the capture of the same
# image and the same changes from the Docker engine, in the same run
# (median of RUNS, interleaved). Both containers are made from the corpus
# image (see run.sh), created and not started, with 1,000 of its files
# replaced: through docker cp for Docker; in the active snapshot's upper
# directory for the test's own containerd (its own root and socket under
# bench/out, stopped at the end). Target (issue 16): containerd <= 1.2x.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
docker image inspect amber-bench-corpus:1 >/dev/null 2>&1 || docker load -q -i corpus.tar >/dev/null

D=$OUT/ctrd
NS=amber-bench
ID=$(printf amber-bench-ctrd | sha256sum | cut -c1-64)
CTR=amber-bench-ctr1000
cleanup() {
	docker rm -f "$CTR" >/dev/null 2>&1 || true
	[ -n "${CPID:-}" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null || true
	grep " $D/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$D" "$OUT/changed1000"
}
trap cleanup EXIT
cleanup
mkdir -p "$D"
cat > "$D/config.toml" <<TOML
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/sock"
[ttrpc]
  address = "$D/sock.ttrpc"
TOML
containerd --config "$D/config.toml" >"$D/log" 2>&1 &
CPID=$!
for _ in $(seq 100); do [ -S "$D/sock" ] && break; sleep 0.1; done
ctr() { command ctr -a "$D/sock" -n "$NS" "$@"; }
ctr images import corpus.tar >/dev/null
ctr containers create docker.io/library/amber-bench-corpus:1 "$ID" /go/bin/go version >/dev/null
docker create --name "$CTR" amber-bench-corpus:1 /go/bin/go version >/dev/null

# 1,000 files of the tree, each replaced by different content, in both.
rm -rf changed1000 && mkdir changed1000
tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -t | grep '^go/src/.*\.go$' | head -1000 > changed1000.list || true
[ "$(wc -l < changed1000.list)" = 1000 ] || { echo "could not list 1000 files of the corpus" >&2; exit 1; }
while read -r f; do
	mkdir -p "changed1000/$(dirname "$f")"
	printf 'changed by the benchmark: %s\n' "$f" > "changed1000/$f"
done < changed1000.list
docker cp changed1000/go/. "$CTR":/go/
upper=$(ctr snapshots --snapshotter overlayfs mounts /mnt "$ID" | grep -o 'upperdir=[^,]*' | cut -d= -f2)
[ -d "$upper" ] || { echo "no upper directory for the containerd container" >&2; exit 1; }
cp -a changed1000/go "$upper/"
echo "changes: docker $(docker diff "$CTR" | wc -l) paths; containerd upper directory $(find "$upper" -type f | wc -l) files"

time_of() {
	/usr/bin/time -o "$OUT/.time" -f '%e %M' "$@" >/dev/null 2>"$OUT/.stderr" || { echo "failed: $*" >&2; cat "$OUT/.stderr" >&2; exit 1; }
	tail -1 "$OUT/.time"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
declare -A T
for i in $(seq "$RUNS"); do
	rm -f d.tar.zst d.tar.zst.* c.tar.zst c.tar.zst.*
	read -r s _ < <(time_of "$AMBER" capture container --runtime docker "$CTR" -o d.tar.zst); T[docker]+="$s "
	read -r s _ < <(time_of "$AMBER" capture container --runtime containerd --address "$D/sock" --namespace "$NS" "$ID" -o c.tar.zst); T[containerd]+="$s "
done
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
ratio=$(awk -v a="$(med containerd)" -v b="$(med docker)" 'BEGIN { printf "%.3f", a / b }')
status=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.2) ? "ok" : "OVER" }')
printf '\n%-56s %9s %9s %7s %8s\n' "figure (median of $RUNS runs)" amber baseline ratio target
printf '%-56s %9s %9s %7s %8s %s\n' "capture container: containerd vs Docker, same changes (s)" "$(med containerd)" "$(med docker)" "$ratio" "<=1.20" "$status"
echo "changed files captured: docker $("$AMBER" ls --json d.tar.zst | grep -o '"changed": [0-9]*' | head -1), containerd $("$AMBER" ls --json c.tar.zst | grep -o '"changed": [0-9]*' | head -1)"
