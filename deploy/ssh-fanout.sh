#!/usr/bin/env bash
# ssh-fanout.sh: capture containers on many hosts at once, each straight
# into the case's repository in one registry: docker://REGISTRY/CASE/<host>:TAG.
#
#   deploy/ssh-fanout.sh -f hosts.txt -r evidence.example -c case-2026-041 \
#       -t web [-j 8] [-e "J. Doe"] [-d DIR] [-s] -- web db
#
# hosts.txt holds one ssh destination a line ([user@]host; # comments and
# blank lines skipped). On each host, as the ssh user (root, or sudo -n
# with -s), it runs
#   amber capture container CONTAINER... -o docker://REGISTRY/CASE/<host>:TAG
# at most -j hosts at a time (default 4): the archive streams into the
# registry while it is written and is tagged once sealed (nothing is
# tagged on failure; a tag that exists is refused, exit 12). -d DIR also
# keeps a copy on the host in DIR (--keep-local). Each host's output goes
# to LOGDIR/<host>.log (-l, default ./amber-fanout-<time>); a summary of
# every host's exit code is printed at the end, and the script exits 1 if
# any host failed.
# Every host needs amber on its PATH and a login for REGISTRY in its
# Docker config (DOCKER_CONFIG or ~/.docker/config.json of the user amber
# runs as). amber's exit codes: README.md ("Exit codes"); 16 is a login
# the registry refused.
set -euo pipefail

usage() {
	sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

hosts_file="" registry="" case_id="" tag="" jobs=4 examiner="" dir="" sudo="" logdir=""
while getopts "f:r:c:t:j:e:d:l:sh" opt; do
	case $opt in
	f) hosts_file=$OPTARG ;;
	r) registry=$OPTARG ;;
	c) case_id=$OPTARG ;;
	t) tag=$OPTARG ;;
	j) jobs=$OPTARG ;;
	e) examiner=$OPTARG ;;
	d) dir=$OPTARG ;;
	l) logdir=$OPTARG ;;
	s) sudo="sudo -n" ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ -z "$hosts_file" ] || [ -z "$registry" ] || [ -z "$case_id" ] || [ -z "$tag" ] || [ $# -eq 0 ]; then
	usage
fi
case $jobs in '' | *[!0-9]* | 0) echo "ssh-fanout: -j wants a positive number" >&2; exit 2 ;; esac
logdir=${logdir:-./amber-fanout-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$logdir"

# quote renders its arguments for the remote shell.
quote() {
	local out="" a
	for a in "$@"; do
		out+=" '${a//\'/\'\\\'\'}'"
	done
	printf '%s' "${out# }"
}

# capture runs on one host and records its exit code in LOGDIR/<host>.rc.
capture() {
	local host=$1 name ref remote
	shift
	name=${host#*@}          # user@host -> host
	name=${name//[^a-zA-Z0-9._-]/_}
	ref="docker://$registry/$case_id/${name,,}:$tag"
	remote="$sudo amber capture container $(quote "$@") -o $(quote "$ref") --case $(quote "$case_id") --exhibit $(quote "$name:$tag")"
	if [ -n "$examiner" ]; then
		remote+=" --examiner $(quote "$examiner")"
	fi
	if [ -n "$dir" ]; then
		remote+=" --keep-local $(quote "$dir")"
	fi
	local rc=0
	ssh -n -o BatchMode=yes -o ConnectTimeout=15 "$host" "$remote" >"$logdir/$name.log" 2>&1 || rc=$?
	echo "$rc" >"$logdir/$name.rc"
	echo "$host: exit $rc ($ref)"
}

hosts=()
while IFS= read -r line || [ -n "$line" ]; do
	line=${line%%#*}
	line=$(printf '%s' "$line" | tr -d '[:space:]')
	[ -n "$line" ] && hosts+=("$line")
done <"$hosts_file"
if [ ${#hosts[@]} -eq 0 ]; then
	echo "ssh-fanout: no hosts in $hosts_file" >&2
	exit 2
fi

# At most $jobs at a time: wait for one to finish before starting another.
running=0
for h in "${hosts[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	capture "$h" "$@" &
	running=$((running + 1))
done
wait || true

echo
echo "summary ($logdir):"
failed=0
for h in "${hosts[@]}"; do
	name=${h#*@}
	name=${name//[^a-zA-Z0-9._-]/_}
	rc=$(cat "$logdir/$name.rc" 2>/dev/null || echo "?")
	if [ "$rc" = 0 ]; then
		printf '  %-40s ok\n' "$h"
	else
		printf '  %-40s FAILED exit %s (see %s)\n' "$h" "$rc" "$logdir/$name.log"
		failed=$((failed + 1))
	fi
done
echo "${#hosts[@]} hosts, $failed failed"
[ "$failed" -eq 0 ]
