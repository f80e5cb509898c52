#!/usr/bin/env bash
# Makes sure a headless Chromium is on this machine, for the check that
# looks at nodrop bench's index.html as a person would (the page drawn,
# its pictures loaded, its table sorted). Installs Debian's chromium where
# it is missing and this runs as root; elsewhere says how. Idempotent;
# prints a line only when it installs.
set -euo pipefail
for c in chromium chromium-browser google-chrome; do
	if command -v "$c" >/dev/null; then
		exit 0
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "ensure-chromium: no Chromium here; install Debian's chromium (apt-get install chromium) or run as root" >&2
	exit 2
fi
echo "ensure-chromium: installing Debian's chromium (headless, for the bench page's check)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "ensure-chromium: installing chromium failed" >&2
	exit 1
fi
