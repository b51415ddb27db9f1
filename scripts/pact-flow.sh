#!/usr/bin/env bash
# The contract CI flow of docs/contracts.md, step by step:
#   1. broker       start the embedded broker (contracts/broker/cmd/broker on 127.0.0.1, temp DB, random
#                   token), unless PACT_BROKER_BASE_URL (and PACT_BROKER_TOKEN) name a broker to use
#   2. consumers    consumer tests write contracts/pacts/<consumer>-<provider>.json: the HTTP pacts and
#                   the message pact notifications-orders (the order events)
#   3. publish      pact broker publish, consumer version = git sha, branch = git branch
#   4. verify       provider tests verify the pacts the broker selects (mainBranch, matchingBranch,
#                   deployedOrReleased) against the real providers and publish the results; orders
#                   verifies the gateway's HTTP pact and notifications' message pact in one run
#   5. deploy       per pacticipant, providers first: pact broker can-i-deploy, then record-deployment
#   6. negative     a catalog that renames price_cents, and an orders whose events rename total_cents,
#                   fail verification (results published as <version>-broken) and can-i-deploy must
#                   answer no for each
# Environment: PACT_BROKER_BASE_URL, PACT_BROKER_TOKEN (or PACT_BROKER_USERNAME/PASSWORD), PACT_VERSION
# (default: git sha), PACT_BRANCH (default: git branch, "main" when detached), PACT_ENVIRONMENT (default
# production), PACT_FLOW_NEGATIVE=false to leave out step 6 (e.g. against a shared broker), GO.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
cache="$root/.cache/pact"
[ -x "$cache/cli/pact" ] && [ -s "$cache/lib/libpact_ffi.so" ] || bash scripts/pact-tools.sh
pact="$cache/cli/pact"
export CGO_LDFLAGS="-L$cache/lib"
export LD_LIBRARY_PATH="$cache/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PACT_DO_NOT_TRACK=true # no usage events leave the machine

version="${PACT_VERSION:-$(git rev-parse HEAD)}"
branch="${PACT_BRANCH:-$(git rev-parse --abbrev-ref HEAD)}"
[ "$branch" != HEAD ] || branch=main
environment="${PACT_ENVIRONMENT:-production}"
negative="${PACT_FLOW_NEGATIVE:-true}"
# Providers before their consumers: a consumer may only be deployed where its providers already are.
pacticipants=(catalog payments orders notifications gateway)

started=$SECONDS
step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
run() {
	printf '+ %s\n' "$*"
	"$@"
}

tmp="$(mktemp -d)"
broker_pid=""
cleanup() {
	if [ -n "$broker_pid" ]; then
		kill "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

if [ -n "${PACT_BROKER_BASE_URL:-}" ]; then
	step "broker: $PACT_BROKER_BASE_URL (PACT_BROKER_BASE_URL)"
else
	step "broker: start the embedded broker"
	run "$GO" build -o "$tmp/broker" ./contracts/broker/cmd/broker
	token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
	BROKER_ADDR=127.0.0.1:0 BROKER_DB="$tmp/broker.db" BROKER_TOKEN="$token" "$tmp/broker" >"$tmp/broker.log" 2>&1 &
	broker_pid=$!
	addr=""
	for _ in $(seq 300); do # the broker logs the address it listens on; up to 30s
		addr="$(jq -rR 'fromjson? | select(.msg == "listening") | .addr' "$tmp/broker.log" 2>/dev/null | head -n1 || true)"
		[ -n "$addr" ] && break
		kill -0 "$broker_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$addr" ]; then
		echo "pact-flow: the broker did not start:" >&2
		cat "$tmp/broker.log" >&2
		exit 1
	fi
	export PACT_BROKER_BASE_URL="http://$addr" PACT_BROKER_TOKEN="$token"
	echo "embedded broker at $PACT_BROKER_BASE_URL (pid $broker_pid, token in PACT_BROKER_TOKEN)"
fi
echo "version $version, branch $branch, environment $environment"

step "consumers: contract tests write contracts/pacts"
run "$GO" test -tags pact -count=1 -v -run '^TestConsumer' ./contracts/
ls contracts/pacts

step "publish: the pacts as consumer version $version on branch $branch"
run "$pact" broker publish contracts/pacts/*.json --consumer-app-version "$version" --branch "$branch"

step "verify: every provider against the pacts the broker selects, publishing the results"
run env CONTRACTS_SOURCE=broker CONTRACTS_PROVIDER_VERSION="$version" CONTRACTS_PROVIDER_BRANCH="$branch" \
	"$GO" test -tags pact -count=1 -v -run '^TestProvider' ./contracts/

step "deploy: can-i-deploy, then record-deployment to $environment, providers first"
printf '+ %s broker list-environments -o json | jq (is %s there?)\n' "$pact" "$environment"
if ! "$pact" broker list-environments -o json | jq -e --arg env "$environment" \
	'any(._embedded.environments[]?; .name == $env)' >/dev/null; then
	run "$pact" broker create-environment --name "$environment" --production
fi
for p in "${pacticipants[@]}"; do
	run "$pact" broker can-i-deploy --pacticipant "$p" --version "$version" --to-environment "$environment"
	run "$pact" broker record-deployment --pacticipant "$p" --version "$version" --environment "$environment"
done

if [ "$negative" = true ]; then
	# refuses PACTICIPANT CONSUMER: can-i-deploy must answer no for PACTICIPANT $version-broken, and the
	# "no" must come from the published failure, not from a result that never arrived (the verifier only
	# logs a failed publication): CONSUMER's pact must show a failed verification of that version.
	refuses() {
		local status
		set +e
		run "$pact" broker can-i-deploy --pacticipant "$1" --version "$version-broken" --to-environment "$environment"
		status=$?
		set -e
		if [ "$status" -eq 0 ]; then
			echo "pact-flow: can-i-deploy allowed a $1 that breaks the $2 contract" >&2
			exit 1
		fi
		if ! "$pact" broker can-i-deploy --pacticipant "$1" --version "$version-broken" --to-environment "$environment" \
			--output json | jq -e --arg consumer "$2" '.summary.failed >= 1 and any(.matrix[];
				.consumer.name == $consumer and .verificationResult.success == false)' >/dev/null; then
			echo "pact-flow: no failed verification of $1 $version-broken by the $2 pact was published" >&2
			exit 1
		fi
		echo "can-i-deploy refused $1 $version-broken (exit $status): the $2 pact failed verification, as it must"
	}

	step "negative: a catalog that renames price_cents and an orders whose events rename total_cents must fail verification"
	run env CONTRACTS_SOURCE=broker CONTRACTS_PROVIDER_VERSION="$version" CONTRACTS_PROVIDER_BRANCH="$branch" \
		"$GO" test -tags pact -count=1 -v \
		-run '^(TestBrokenProviderFailsVerification|TestBrokenEventProducerFailsVerification)$' ./contracts/

	step "negative: can-i-deploy must answer no for catalog $version-broken and orders $version-broken"
	refuses catalog gateway
	refuses orders notifications
else
	step "negative: left out (PACT_FLOW_NEGATIVE=$negative)"
fi

step "done: contracts verified, $version recorded as deployed to $environment"
