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

# grep: the credential deleted in layer 2 is gone from the rootfs but still
# in layer 1.
printf '\n$ amber cat ... | grep AKIA   (for each layer)\n'
for n in 0 1 2; do
	$AMBER ls --sha256sum "$OUT/case.tar.zst" images/webapp_v1/layers/$n | while read -r sum name; do
		if $AMBER cat "$OUT/case.tar.zst" "images/webapp_v1/layers/$n/$name" 2>/dev/null | grep -q AKIA; then
			echo "layers/$n/$name: $($AMBER cat "$OUT/case.tar.zst" "images/webapp_v1/layers/$n/$name" | grep AKIA)"
		fi
	done
done

# diff: what changed between the base stage and the final image.
printf '\n$ diff <(amber ls --sha256sum ... stages/0) <(amber ls --sha256sum ... rootfs)\n'
$AMBER ls --sha256sum "$OUT/case.tar.zst" images/webapp_v1/stages/0 > "$OUT/stage0.sha256"
$AMBER ls --sha256sum "$OUT/case.tar.zst" images/webapp_v1/rootfs > "$OUT/rootfs.sha256"
diff "$OUT/stage0.sha256" "$OUT/rootfs.sha256" || true
printf '\n$ diff stages/0/etc/app.conf rootfs/etc/app.conf\n'
$AMBER cat "$OUT/case.tar.zst" images/webapp_v1/stages/0/etc/app.conf > "$OUT/app.conf.base"
$AMBER cat "$OUT/case.tar.zst" images/webapp_v1/rootfs/etc/app.conf > "$OUT/app.conf.final"
diff -u "$OUT/app.conf.base" "$OUT/app.conf.final" || true

# Standard tools still read the archive.
printf '\n$ zstd -dc %s | tar -tv\n' "$OUT/case.tar.zst"
zstd -dc "$OUT/case.tar.zst" | tar -tv
run $AMBER log "$OUT/case.tar.zst"
