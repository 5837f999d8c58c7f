#!/bin/sh
# The main job on a shipped default: capture the committed webapp:v1 image
# (testdata/images), verify it, list it, grep a layer, diff two stages.
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
run getfattr -n user.amber.sha256 "$IMG/rootfs/etc/passwd"
printf '\n$ touch %s/rootfs/evil   (the mount is read-only)\n' "$IMG"
touch "$IMG/rootfs/evil" 2>&1 || true
run $AMBER umount "$OUT/mnt"
trap - EXIT

# Standard tools still read the archive.
printf '\n$ zstd -dc %s | tar -tv\n' "$OUT/case.tar.zst"
zstd -dc "$OUT/case.tar.zst" | tar -tv
run $AMBER log "$OUT/case.tar.zst"
