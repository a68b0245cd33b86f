#!/usr/bin/env bash
# CI check of the AWS deployment: the SAM template is the one the provider registry generates, it validates
# and lints clean, every function's binary is a binary of the workspace member its CodeUri names, and the
# three Lambda binaries build and link for arm64.
# Needs on PATH: sam (AWS SAM CLI, with cfn-lint), cargo and cargo-lambda (with zig to cross-compile), e.g.
#   pip install aws-sam-cli cargo-lambda && PATH="$VIRTUAL_ENV/bin:$PATH" scripts/check-infra.sh
# Deploys nothing and needs no AWS account: the region below only satisfies the SAM CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

template=infra/template.yaml
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

for tool in sam cargo cargo-lambda; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check-infra: $tool is required on PATH (pip install aws-sam-cli cargo-lambda; Rust from https://rustup.rs)" >&2
        exit 1
    fi
done

echo "==> the template, sample events and provider table are what the provider registry generates"
# Built by the test run; `cargo run` builds it if this script runs alone.
cargo run --locked --quiet -p em-agent -- generate --check

echo "==> the Lambda functions build no SQLite; the providers build no AWS SDK and no SQLite"
for fn in em-webhook em-aggregator em-api em-digest; do
    if cargo tree --locked -p "$fn" -e normal,build --prefix none | grep -qE '^(rusqlite|libsqlite3-sys) '; then
        echo "check-infra: $fn depends on SQLite" >&2
        exit 1
    fi
done
if cargo tree --locked -p em-providers -e normal,build,dev --prefix none | grep -qE '^(aws-|rusqlite|libsqlite3-sys)'; then
    echo "check-infra: em-providers (or its tests) depends on the AWS SDK or SQLite" >&2
    exit 1
fi

echo "==> sam validate --lint: $template (region $AWS_DEFAULT_REGION, for validation only)"
# samconfig.toml names the template; pass it anyway so the check does not depend on the config file. Any
# cfn-lint finding, warnings included, makes `sam validate --lint` fail.
sam validate --lint --template-file "$template"

echo "==> each function's Binary is a [[bin]] of the member its CodeUri names"
# Pairs "<Binary> <CodeUri>" in template order: Metadata (with Binary) comes before Properties (with CodeUri).
pairs="$(awk '/^ +Binary: /{bin=$2} /^ +CodeUri: /{print bin, $2; bin=""}' "$template")"
if [ -z "$pairs" ]; then
    echo "check-infra: no function with a Binary and a CodeUri in $template" >&2
    exit 1
fi
while read -r bin codeuri; do
    member="${codeuri#../}"
    manifest="$member/Cargo.toml"
    if [ -z "$bin" ] || [ ! -f "$manifest" ]; then
        echo "check-infra: CodeUri $codeuri (Binary '${bin}') is not a workspace member with a Cargo.toml" >&2
        exit 1
    fi
    if ! awk -v want="name = \"$bin\"" '/^\[\[bin\]\]/{inbin=1; next} /^\[/{inbin=0} inbin && $0==want{found=1} END{exit !found}' "$manifest"; then
        echo "check-infra: $manifest defines no [[bin]] named $bin" >&2
        exit 1
    fi
    echo "    $bin <- $member"
done <<<"$pairs"

echo "==> cargo lambda build --arm64: webhook, aggregator, api, digest"
# The workspace's default member is the CLI, so name the packages: --bin alone would look only there. The
# lambda-check profile (no optimisation, no LTO) checks that they compile and link for arm64 in a fraction of
# a release build's time; `sam build` builds them with the release profile.
cargo lambda build --profile lambda-check --arm64 --locked \
    --package em-webhook --package em-aggregator --package em-api --package em-digest \
    --bin webhook --bin aggregator --bin api --bin digest

target_dir="${CARGO_TARGET_DIR:-target}"
for bin in webhook aggregator api digest; do
    artifact="$target_dir/lambda/$bin/bootstrap"
    if [ ! -x "$artifact" ]; then
        echo "check-infra: $artifact was not built" >&2
        exit 1
    fi
    if command -v file >/dev/null 2>&1 && ! file -L "$artifact" | grep -q 'ARM aarch64'; then
        echo "check-infra: $artifact is not an arm64 executable: $(file -L "$artifact")" >&2
        exit 1
    fi
    echo "    $artifact ($(du -h "$artifact" | cut -f1))"
done

echo "check-infra: ok"
