#!/bin/bash
# amber capture host (a dead host's Docker data root, read offline) against
# amber capture container of the same container through the engine, in the
# same run (median of RUNS, interleaved). The container is made from the
# corpus image (see run.sh), created and not started, with 100 of its
# files replaced (docker cp); the offline capture reads the engine's own
# data root read-only (the engine's state does not change while it is
# read: the container does not run). Target (issue 17): offline <= 1.2x.
# Then amber host on a synthetic root of 1,000 containers and 5,000 images
# (bench/fakehost): target <= 1 s; beside it, the time to merely read the
# same container records (cat of every config.v2.json), for scale.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
go build -o "$OUT/fakehost" ./bench/fakehost
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
docker image inspect amber-bench-corpus:1 >/dev/null 2>&1 || docker load -q -i corpus.tar >/dev/null
ROOTDIR=$(docker info --format '{{.DockerRootDir}}')

CTR=amber-bench-host
trap 'docker rm -f "$CTR" >/dev/null 2>&1 || true; rm -rf "$OUT/hchanged" "$OUT/fakeroot"' EXIT
docker rm -f "$CTR" >/dev/null 2>&1 || true
docker create --name "$CTR" amber-bench-corpus:1 /go/bin/go version >/dev/null
rm -rf hchanged && mkdir hchanged
tar -xOf corpus.tar --wildcards '*/layer.tar' 'blobs/sha256/*' 2>/dev/null | tar -t | grep '^go/src/.*\.go$' | head -100 > hchanged.list || true
[ "$(wc -l < hchanged.list)" = 100 ] || { echo "could not list 100 files of the corpus" >&2; exit 1; }
while read -r f; do
	mkdir -p "hchanged/$(dirname "$f")"
	printf 'changed by the benchmark: %s\n' "$f" > "hchanged/$f"
done < hchanged.list
docker cp hchanged/go/. "$CTR":/go/

time_of() {
	/usr/bin/time -o "$OUT/.time" -f '%e %M' "$@" >/dev/null 2>"$OUT/.stderr" || { echo "failed: $*" >&2; cat "$OUT/.stderr" >&2; exit 1; }
	tail -1 "$OUT/.time"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
declare -A T
for i in $(seq "$RUNS"); do
	rm -f live.tar.zst live.tar.zst.* dead.tar.zst dead.tar.zst.*
	read -r s _ < <(time_of "$AMBER" capture container --runtime docker "$CTR" -o live.tar.zst); T[live]+="$s "
	read -r s _ < <(time_of "$AMBER" capture host / --docker-root "$ROOTDIR" "$CTR" -o dead.tar.zst); T[dead]+="$s "
	rm -f save.tar.zst save.tar.zst.*
	read -r s _ < <(time_of "$AMBER" capture container --runtime docker --images-from engine "$CTR" -o save.tar.zst); T[save]+="$s "
done
# The same evidence both ways: the container's change layer and the image's.
for a in live dead save; do "$AMBER" ls --json "$a.tar.zst" | grep -o '"merkle_root": "[^"]*"' | sort > "$a.roots"; done
same=$(cmp -s live.roots dead.roots && cmp -s live.roots save.roots && echo "same Merkle roots" || echo "DIFFERENT Merkle roots")

./fakehost -o fakeroot -containers 1000 -images 5000
for i in $(seq "$RUNS"); do
	read -r s _ < <(time_of "$AMBER" host fakeroot); T[host]+="$s "
	read -r s _ < <(time_of sh -c 'cat fakeroot/var/lib/docker/containers/*/config.v2.json'); T[cat]+="$s "
done
n=$("$AMBER" host --json fakeroot | grep -c '"runtime": "docker-root"' || true)

med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 0.001; printf "%.3f", a / b }'; }
r1=$(ratio "$(med dead)" "$(med live)")
printf '\n%-60s %9s %9s %7s %8s\n' "figure (median of $RUNS runs)" amber baseline ratio target
printf '%-60s %9s %9s %7s %8s %s\n' "capture host (offline) vs capture container (live) (s)" "$(med dead)" "$(med live)" "$r1" "<=1.20" \
	"$(awk -v r="$r1" 'BEGIN { print (r <= 1.2) ? "ok" : "OVER" }')"
r2=$(ratio "$(med dead)" "$(med save)")
printf '%-60s %9s %9s %7s %8s %s\n' "capture host (offline) vs capture container --images-from engine" "$(med dead)" "$(med save)" "$r2" "<=1.20" \
	"$(awk -v r="$r2" 'BEGIN { print (r <= 1.2) ? "ok" : "OVER" }')"
printf '%-60s %9s %9s %7s %8s\n' "capture container: images from its files vs docker save (s)" "$(med live)" "$(med save)" "$(ratio "$(med live)" "$(med save)")" "-"
printf '%-60s %9s %9s %7s %8s %s\n' "amber host, 1,000 containers + 5,000 images (s) vs cat" "$(med host)" "$(med cat)" "$(ratio "$(med host)" "$(med cat)")" "<=1s" \
	"$(awk -v s="$(med host)" 'BEGIN { print (s <= 1.0) ? "ok" : "OVER" }')"
echo "offline, live (files) and live (docker save) archives: $same; amber host listed $n entries (containers and images)"
