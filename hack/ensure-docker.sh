#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine, installing and
# starting one where needed (CI starts on a clean machine with none):
#   1. install Debian's docker.io (and debootstrap, jq) if dockerd is missing;
#   2. on hosts whose capability bounding set lacks CAP_SYS_RESOURCE, where
#      every `docker run --privileged` (so every kind node) fails, register
#      hack/runc-nosysresource as Docker's default runtime;
#   3. start dockerd in the background if nothing answers, and wait for it.
# Idempotent; prints one line per change it makes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v jq >/dev/null || need+=(jq)
if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "ensure-docker: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
		exit 2
	fi
	echo "ensure-docker: installing ${need[*]} from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

wrapper=/usr/local/libexec/nodrop/runc-nosysresource
capbnd=$(awk '/^CapBnd/{print $2}' /proc/self/status)
if (((0x$capbnd >> 24) & 1)); then
	runtime=""
else
	runtime=runc-nosysresource
	mkdir -p "$(dirname "$wrapper")"
	CGO_ENABLED=0 go build -o "$wrapper.new" ./hack/runc-nosysresource
	if ! cmp -s "$wrapper.new" "$wrapper"; then
		mv "$wrapper.new" "$wrapper"
		echo "ensure-docker: CAP_SYS_RESOURCE is missing from the bounding set ($capbnd); installed $wrapper"
	else
		rm -f "$wrapper.new"
	fi
	mkdir -p /etc/docker
	[ -s /etc/docker/daemon.json ] || echo '{}' >/etc/docker/daemon.json
	want=$(jq --arg p "$wrapper" '.runtimes["runc-nosysresource"]={"path":$p} | .["default-runtime"]="runc-nosysresource"' /etc/docker/daemon.json)
	if [ "$want" != "$(jq . /etc/docker/daemon.json)" ]; then
		echo "$want" >/etc/docker/daemon.json
		echo "ensure-docker: registered runc-nosysresource as Docker's default runtime in /etc/docker/daemon.json"
		if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
			kill -HUP "$(cat /var/run/docker.pid)" # live reload of runtimes
			sleep 1
		fi
	fi
fi

# A dockerd that is alive but does not answer may be starting (wait for
# it) or shutting down (wait until it is gone, then start a new one).
dockerd_alive() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }
for _ in $(seq 90); do
	docker info >/dev/null 2>&1 && break
	if ! dockerd_alive && ! pgrep -x dockerd >/dev/null; then
		echo "ensure-docker: starting dockerd (log: /var/log/nodrop-dockerd.log)"
		mkdir -p /lib/modules # kind bind-mounts it
		setsid nohup dockerd >/var/log/nodrop-dockerd.log 2>&1 </dev/null &
	fi
	sleep 1
done
if ! docker info >/dev/null 2>&1; then
	echo "ensure-docker: the Docker engine did not answer within 90 s; last lines of its log:" >&2
	tail -n 20 /var/log/nodrop-dockerd.log >&2 || true
	exit 1
fi
if [ -n "$runtime" ] && ! docker info -f '{{.DefaultRuntime}}' | grep -qx "$runtime"; then
	echo "ensure-docker: dockerd does not use $runtime as its default runtime; restart dockerd" >&2
	exit 1
fi
