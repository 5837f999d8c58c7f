#!/bin/sh
# Brings up what amber's tests and benchmarks need on Debian: the packages
# below and a running Docker engine. containerd (with its CRI plugin) and
# Podman are run by the tests themselves, each with its own root, state and
# socket. Idempotent; as root it installs and starts what is missing,
# otherwise it says what is missing.
set -eu

PKGS="file docker.io containerd runc podman fuse3 busybox-static zstd umoci skopeo squashfs-tools squashfuse sleuthkit attr hyperfine docker-registry apache2-utils curl openssl chromium libxml2-utils poppler-utils python3-rdflib python3-yaml tmux"
need=""
for pair in docker:docker.io dockerd:docker.io containerd:containerd ctr:containerd runc:runc podman:podman fusermount3:fuse3 busybox:busybox-static zstd:zstd umoci:umoci \
            skopeo:skopeo mksquashfs:squashfs-tools squashfuse_ll:squashfuse mactime:sleuthkit getfattr:attr hyperfine:hyperfine docker-registry:docker-registry htpasswd:apache2-utils curl:curl \
            openssl:openssl chromium:chromium xmllint:libxml2-utils pdftotext:poppler-utils tmux:tmux; do
	cmd=${pair%%:*}; pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
# rdflib for the CASE/UCO export's test, yaml for deploy/'s: Debian's python3, whatever python3
# is first on PATH.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import rdflib' >/dev/null 2>&1 || need="$need python3-rdflib"
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need="$need python3-yaml"
# busybox-static specifically: a dynamic busybox cannot run in an empty image.
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q static; then
	[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || need="$need busybox-static"
fi

if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "ensure-deps: missing packages:$need (run as root, or apt-get install them)" >&2
	else
		echo "ensure-deps: installing$need" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		# shellcheck disable=SC2086
		apt-get install -y -qq $PKGS >/dev/null
	fi
fi

docker_up() { docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }
if command -v dockerd >/dev/null 2>&1 && ! docker_up; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "ensure-deps: the Docker engine is not running and only root can start it here" >&2
		exit 0
	fi
	echo "ensure-deps: starting dockerd" >&2
	mkdir -p /var/log
	nohup dockerd >/var/log/amber-dockerd.log 2>&1 &
	i=0
	until docker_up; do
		i=$((i + 1))
		if [ $i -gt 120 ]; then
			echo "ensure-deps: dockerd did not come up; see /var/log/amber-dockerd.log" >&2
			tail -20 /var/log/amber-dockerd.log >&2 || true
			exit 1
		fi
		sleep 0.5
	done
fi
