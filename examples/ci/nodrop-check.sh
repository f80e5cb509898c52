#!/usr/bin/env bash
# The check a CI job runs on an app before it ships: a kind cluster, the
# app's image loaded into it, the app's Helm chart rolled under constant
# load and every request judged. The exit status is nodrop check's: 0 no
# request lost, 1 requests lost, 2 bad input, 3 not judged.
#
# github-actions.yml and gitlab-ci.yml call it. nodrop's own `make test`
# runs it on nodrop's cluster against examples/shop (suites/check_test.go),
# so the recipe is known to work as written.
#
# Settings, from the environment:
#   NODROP      the nodrop binary (default: nodrop on PATH)
#   CHART       the app's Helm chart, directory or .tgz (default: examples/shop/chart)
#   APP_IMAGE   the app's image, built on the runner (default: myshop:1.0)
#   NODE_IMAGE  a kind node image to pull instead of building one offline,
#               where a registry is reachable (kindest/node:v1.37.2)
#   CLUSTER     the kind cluster's name (default: nodrop)
#   MODE        load: keepalive, fresh or both (default: both)
#   OUT         where junit.xml, summary.md and results.json go (default: nodrop-out)
#   CHECK_ARGS  more flags for nodrop check (--values FILE, --set k=v, --disruption …)
set -euo pipefail

nodrop=${NODROP:-nodrop}
chart=${CHART:-examples/shop/chart}
image=${APP_IMAGE:-myshop:1.0}
cluster=${CLUSTER:-nodrop}
mode=${MODE:-both}
out=${OUT:-nodrop-out}

up=("$nodrop" cluster up --name "$cluster")
if [ -n "${NODE_IMAGE:-}" ]; then
	up+=(--image "$NODE_IMAGE")
fi
"${up[@]}"

# shellcheck disable=SC2086 # CHECK_ARGS is a list of flags
"$nodrop" check --cluster "$cluster" --chart "$chart" --load-image "$image" \
	--mode "$mode" --out "$out" ${CHECK_ARGS:-} && code=0 || code=$?

# The verdict table as the job's summary, where the CI shows one.
if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$out/summary.md" ]; then
	cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
fi
exit "$code"
