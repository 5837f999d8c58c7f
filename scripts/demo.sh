#!/bin/sh
# The main job on a shipped default: capture the committed webapp:v1 image
# (testdata/images), verify it, list it, grep a layer, diff two stages; then,
# when a Docker engine is reachable, capture a live container with its memory.
set -eu
AMBER=${AMBER:-bin/amber}
OUT=${OUT:-demo}
rm -rf "$OUT"; mkdir -p "$OUT"
run() { printf '\n$ %s\n' "$*"; "$@"; }

run $AMBER capture image testdata/images/webapp-docker-save.tar -o "$OUT/case.tar.zst" \
	--case DEMO-1 --exhibit E1 --examiner "${USER:-examiner}" --notes "amber demo on testdata"
run $AMBER verify "$OUT/case.tar.zst"
(cd "$OUT" && run sha256sum -c --strict case.tar.zst.sha256)
run $AMBER ls "$OUT/case.tar.zst"
run $AMBER ls "$OUT/case.tar.zst" images/webapp_v1/rootfs/srv

# Mount it read-only and use the standard tools.
mkdir -p "$OUT/mnt"
run $AMBER mount --background "$OUT/case.tar.zst" "$OUT/mnt"
trap '$AMBER umount "$OUT/mnt" >/dev/null 2>&1 || true' EXIT
IMG="$OUT/mnt/images/webapp_v1"
run ls -l "$IMG" "$IMG/layers"
# grep: the credential deleted in layer 2 is gone from the rootfs, but still
# in layer 1 (and in the stages before the deletion).
run grep -r AKIA "$IMG"
printf '\n$ grep -r AKIA %s/rootfs   (nothing: deleted in layer 2)\n' "$IMG"
grep -r AKIA "$IMG/rootfs" || echo "(no match)"
# diff: what the last two layers changed.
printf '\n$ diff -r --no-dereference %s/stages/0 %s/rootfs\n' "$IMG" "$IMG"
diff -r --no-dereference "$IMG/stages/0" "$IMG/rootfs" || true
# make demo runs make deps, which installs getfattr (attr) as root; without
# it, say so rather than fail.
if command -v getfattr >/dev/null 2>&1; then
	run getfattr -n user.amber.sha256 "$IMG/rootfs/etc/passwd"
else
	printf '\n$ getfattr -n user.amber.sha256 %s/rootfs/etc/passwd\n(skipped: getfattr is not installed; apt-get install attr, or run make deps as root)\n' "$IMG"
fi
printf '\n$ touch %s/rootfs/evil   (the mount is read-only)\n' "$IMG"
touch "$IMG/rootfs/evil" 2>&1 || true
run $AMBER umount "$OUT/mnt"
trap - EXIT

# Standard tools still read the archive.
printf '\n$ zstd -dc %s | tar -tv\n' "$OUT/case.tar.zst"
zstd -dc "$OUT/case.tar.zst" | tar -tv
run $AMBER log "$OUT/case.tar.zst"

# A live container, when an engine is there: a busybox container started
# here, captured with its memory (a secret that only its shell's memory
# holds: put together at run time, in no file, no environment, no command
# line), verified, its memory listed; then removed.
CTR=amber-demo-ctr
CTR_IMG=amber-demo-busybox:1
BUSYBOX=$(command -v busybox || true)
if ! docker version >/dev/null 2>&1; then
	printf '\n(no Docker engine reachable: the live container capture is skipped; make deps starts one as root)\n'
	exit 0
fi
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q static; then
	printf '\n(no static busybox for a container image: the live container capture is skipped; apt-get install busybox-static)\n'
	exit 0
fi
cleanup() {
	docker rm -f "$CTR" >/dev/null 2>&1 || true
	docker rmi "$CTR_IMG" >/dev/null 2>&1 || true
}
cleanup
trap cleanup EXIT
mkdir -p "$OUT/ctr-rootfs/bin" "$OUT/ctr-rootfs/etc" "$OUT/ctr-rootfs/tmp"
cp "$BUSYBOX" "$OUT/ctr-rootfs/bin/busybox"
for a in sh sleep; do ln -sf busybox "$OUT/ctr-rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$OUT/ctr-rootfs/etc/passwd"
printf '\n$ tar -C %s -c . | docker import - %s\n' "$OUT/ctr-rootfs" "$CTR_IMG"
tar -C "$OUT/ctr-rootfs" -c . | docker import - "$CTR_IMG"
SCRIPT='a=demo; S="$a-secret-$((6*7))"; echo changed > /etc/motd; while :; do sleep 3600; done'
printf "\n\$ docker run -d --name %s %s sh -c '%s'\n" "$CTR" "$CTR_IMG" "$SCRIPT"
docker run -d --name "$CTR" "$CTR_IMG" sh -c "$SCRIPT"
sleep 1
MEM=""
if [ "$(id -u)" -ne 0 ]; then
	MEM=--no-memory
	printf '\n(not root: process memory cannot be read; captured with --no-memory)\n'
fi
run $AMBER capture container "$CTR" $MEM -o "$OUT/live.tar.zst" --case DEMO-1 --exhibit E2 --examiner "${USER:-examiner}"
run $AMBER verify "$OUT/live.tar.zst"
run $AMBER cat "$OUT/live.tar.zst" "containers/$CTR/changes.txt"
if [ -z "$MEM" ]; then
	run $AMBER ls "$OUT/live.tar.zst" "containers/$CTR/memory"
	SH=$($AMBER ls "$OUT/live.tar.zst" "containers/$CTR/memory" | awk '{print $NF}' | grep -- '-sh$' | head -1)
	run $AMBER ls "$OUT/live.tar.zst" "containers/$CTR/memory/$SH"
	printf '\n$ %s cat %s containers/%s/memory/%s/core | grep -a -o "demo-secret-[0-9]*" | sort -u\n' "$AMBER" "$OUT/live.tar.zst" "$CTR" "$SH"
	$AMBER cat "$OUT/live.tar.zst" "containers/$CTR/memory/$SH/core" | grep -a -o 'demo-secret-[0-9]*' | sort -u
fi
