#!/bin/bash
# Registry benchmarks (issue 18): the corpus archive kept in a loopback
# docker-registry (distribution 2.8, plain HTTP, storage under
# bench/out/registry, stopped at the end) and read from there, each figure
# beside its baseline from the same run: median of RUNS interleaved runs,
# ratio and target.
#   ls docker://REF, fresh --cache each run         absolute, <= 0.3 s
#   mount ready (mount --background until it answers) absolute, <= 0.5 s
#   grep -r over the registry mount vs the local archive's mount:
#     cold (fresh --cache, page cache dropped, both remounted) <= 1.5x,
#     warm (at once again) <= 1.1x
#   amber push vs curl: POST an upload, PUT the same bytes monolithically,
#     each to a fresh repository (so the registry never has the blob
#     linked there already and neither side is a no-op) <= 1.2x
#   capture to docker:// vs capture to a local file <= 1.2x, when capture
#     takes -o docker://
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER:-$PWD/bin/amber}
OUT=${BENCH_OUT:-$PWD/bench/out}
RUNS=${RUNS:-5}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
[ -f "$OUT/go.mod" ] || printf 'module amber.bench/out\n' > "$OUT/go.mod"
cd "$OUT"
[ -s corpus.tar ] || { echo "run bench/run.sh first (it builds the corpus)" >&2; exit 1; }
if [ ! -s c.tar.zst ]; then "$AMBER" capture image corpus.tar -o c.tar.zst >/dev/null; fi
NAME=images/amber-bench-corpus_1

# The registry: a free loopback port, its configuration written as
# internal/testenv/registry.go does (delete enabled; no auth, no TLS).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$port
rm -rf registry; mkdir -p registry
cat > registry/config.yml <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $OUT/registry/storage
  delete:
    enabled: true
http:
  addr: $HOST
EOF
"$REGISTRY_BIN" serve registry/config.yml >registry/registry.log 2>&1 &
regpid=$!
for _ in $(seq 200); do curl -fs "http://$HOST/v2/" >/dev/null && break; sleep 0.05; done
curl -fs "http://$HOST/v2/" >/dev/null || { echo "docker-registry did not answer at $HOST" >&2; cat registry/registry.log >&2; exit 1; }

mkdir -p mnt-amber mnt-reg
umount_all() { "$AMBER" umount mnt-reg >/dev/null 2>&1 || true; "$AMBER" umount mnt-amber >/dev/null 2>&1 || true; }
cleanup() { umount_all; kill "$regpid" 2>/dev/null || true; wait "$regpid" 2>/dev/null || true; rm -rf caches; }
trap cleanup EXIT
umount_all

# The pushed archive: a copy of c.tar.zst whose sidecars are restored
# before each push (push appends a "pushed" event to its custody log).
cp c.tar.zst r.tar.zst
cp c.tar.zst.sha256 r.tar.zst.sha256
[ -f c.tar.zst.custody.jsonl ] && cp c.tar.zst.custody.jsonl r.tar.zst.custody.jsonl.orig || : > r.tar.zst.custody.jsonl.orig
sed -i 's/c\.tar\.zst/r.tar.zst/' r.tar.zst.sha256
reset_sidecars() { cp r.tar.zst.custody.jsonl.orig r.tar.zst.custody.jsonl; [ -s r.tar.zst.custody.jsonl ] || rm -f r.tar.zst.custody.jsonl; }
reset_sidecars
REF=docker://$HOST/bench/corpus:1
"$AMBER" push --insecure r.tar.zst "$REF" >/dev/null 2>registry/push.log || { cat registry/push.log >&2; exit 1; }
reset_sidecars
DIGEST=sha256:$(cut -d' ' -f1 r.tar.zst.sha256)

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
secs() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
# secsok: like secs, for commands whose exit status is no failure (grep
# finding nothing exits 1).
secsok() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) m = a[(NR+1)/2]; else m = (a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }
declare -A T
add() { T[$1]+="$2 "; }
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
fresh() { rm -rf caches/$1; mkdir -p caches/$1; echo caches/$1; }
# mount_*: mount in the background, then wait until the mount answers.
answer() { for _ in $(seq 1000); do [ -e "$1/$NAME" ] && return; sleep 0.005; done; echo "$1 did not answer" >&2; exit 1; }
mount_reg() { "$AMBER" mount --background --insecure --cache "$1" "$REF" mnt-reg >/dev/null && answer mnt-reg; }
mount_amber() { "$AMBER" mount --background --no-log c.tar.zst mnt-amber >/dev/null && answer mnt-amber; }
# curl_put REPO: the baseline upload, monolithic: POST then PUT LOCATION.
curl_put() {
	local loc sep
	loc=$(curl -fsS -X POST -D - -o /dev/null "http://$HOST/v2/$1/blobs/uploads/" | awk -F': ' 'tolower($1) == "location" { sub(/\r$/, "", $2); print $2 }')
	case $loc in http*) ;; *) loc=http://$HOST$loc ;; esac
	case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
	curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @r.tar.zst "$loc${sep}digest=$DIGEST" >/dev/null
}
push_amber() { "$AMBER" push --insecure r.tar.zst "docker://$HOST/$1:1" >/dev/null; }

# capture -o docker://: measured only when this amber has it (a probe).
capreg=no
if "$AMBER" capture image --insecure corpus.tar -o "docker://$HOST/bench/capprobe:1" >/dev/null 2>registry/capprobe.log; then capreg=yes; fi

for i in $(seq "$RUNS"); do
	add ls_reg "$(secs "$AMBER" ls --insecure --cache "$(fresh ls$i)" "$REF")"
	add ls_local "$(secs "$AMBER" ls c.tar.zst)"
	# mount until ready
	# (the page cache dropped before each: amber's own binary is cold for
	# both, not only for the first)
	drop; add mount_reg "$(secs mount_reg "$(fresh m$i)")"
	drop; add mount_amber "$(secs mount_amber)"
	# grep -r cold (fresh cache, page cache dropped, both remounted), then
	# warm at once, one file system at a time
	umount_all; mount_reg "$(fresh g$i)"; mount_amber
	drop; add grep_cold_reg "$(secsok grep -r AMBER_NOT_THERE mnt-reg/$NAME/rootfs)"
	add grep_warm_reg "$(secsok grep -r AMBER_NOT_THERE mnt-reg/$NAME/rootfs)"
	drop; add grep_cold_amber "$(secsok grep -r AMBER_NOT_THERE mnt-amber/$NAME/rootfs)"
	add grep_warm_amber "$(secsok grep -r AMBER_NOT_THERE mnt-amber/$NAME/rootfs)"
	umount_all; rm -rf caches
	# push vs curl, each to a repository of its own
	reset_sidecars
	add push_curl "$(secs curl_put "bench/curl$i")"
	add push_amber "$(secs push_amber "bench/push$i")"
	# push --full (every file's hash re-derived while it uploads, as
	# amber verify): what the default sealed check saves
	reset_sidecars
	add push_full "$(secs "$AMBER" push --full --insecure r.tar.zst "docker://$HOST/bench/full$i:1")"
	reset_sidecars
	if [ $capreg = yes ]; then
		rm -f cap.tar.zst cap.tar.zst.*
		add cap_local "$(secs "$AMBER" capture image corpus.tar -o cap.tar.zst)"
		add cap_reg "$(secs "$AMBER" capture image --insecure corpus.tar -o "docker://$HOST/bench/cap$i:1")"
		rm -f cap.tar.zst cap.tar.zst.*
	fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ok() { awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "ok" : "OVER" }'; }
line() { printf '%-48s %9s %9s %7s %8s %s\n' "$@"; }
printf '\n%-48s %9s %9s %7s %8s\n' "figure (median of $RUNS runs, seconds)" registry baseline ratio target
line "ls docker:// (fresh cache), vs ls of the file" "$(med ls_reg)" "$(med ls_local)" "$(ratio "$(med ls_reg)" "$(med ls_local)")" "<=0.3s" "$(ok "$(med ls_reg)" 0.3)"
line "mount ready docker://, vs the local archive" "$(med mount_reg)" "$(med mount_amber)" "$(ratio "$(med mount_reg)" "$(med mount_amber)")" "<=0.5s" "$(ok "$(med mount_reg)" 0.5)"
r=$(ratio "$(med grep_cold_reg)" "$(med grep_cold_amber)"); line "grep -r cold, vs the local archive's mount" "$(med grep_cold_reg)" "$(med grep_cold_amber)" "$r" "<=1.5" "$(ok "$r" 1.5)"
r=$(ratio "$(med grep_warm_reg)" "$(med grep_warm_amber)"); line "grep -r warm, vs the local archive's mount" "$(med grep_warm_reg)" "$(med grep_warm_amber)" "$r" "<=1.1" "$(ok "$r" 1.1)"
r=$(ratio "$(med push_amber)" "$(med push_curl)"); line "push, vs curl POST + monolithic PUT" "$(med push_amber)" "$(med push_curl)" "$r" "<=1.2" "$(ok "$r" 1.2)"
r=$(ratio "$(med push_full)" "$(med push_curl)"); line "  push --full (as amber verify while uploading)" "$(med push_full)" "$(med push_curl)" "$r" "-" "(not a target)"
if [ $capreg = yes ]; then
	r=$(ratio "$(med cap_reg)" "$(med cap_local)"); line "capture -o docker://, vs -o FILE" "$(med cap_reg)" "$(med cap_local)" "$r" "<=1.2" "$(ok "$r" 1.2)"
else
	line "capture -o docker://, vs -o FILE" "-" "-" "-" "<=1.2" "not built yet (the probe's answer: registry/capprobe.log)"
fi
