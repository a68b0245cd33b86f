#!/usr/bin/env bash
# Fails when a crate resolves with other features in a build of one binary (`em-agent`, a function, as the
# end-to-end tests, `cargo lambda` and `sam build` build them) than in the workspace's test build. Each such
# crate, and everything above it, would be compiled twice: minutes of CI and gigabytes of disk for the AWS
# SDK alone. The cure is a feature pin in the workspace's Cargo.toml (see the comments there).
set -euo pipefail
cd "$(dirname "$0")/.."

features() {
    # Registry crates only: "name@version features", one line each.
    cargo tree --locked "$@" -f '{p}|{f}' --prefix none | sed 's/ (\*)$//' | grep -v ' (/' |
        awk -F'|' '{ split($1, p, " "); print p[1] "@" p[2] " " $2 }' | sort -u
}
workspace="$(mktemp)"
one="$(mktemp)"
trap 'rm -f "$workspace" "$one"' EXIT
features --workspace -e normal,build,dev >"$workspace"
status=0
for package in em-agent em-webhook em-aggregator em-api em-digest; do
    features -p "$package" -e normal,build >"$one"
    # A crate with no features on one side joins to a line with one field fewer, and still differs.
    differ="$(join "$one" "$workspace" | awk '$2 != $3' || true)"
    if [ -n "$differ" ]; then
        echo "check-graph: $package resolves these crates unlike the workspace (name@version, its features, the workspace's):" >&2
        echo "$differ" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "check-graph: every binary's build shares the workspace's dependency graph"
exit "$status"
