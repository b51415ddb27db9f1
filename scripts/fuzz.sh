#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 3000x), one target per `go test`
# invocation as Go requires, and stops at the first failure. `make test` runs a fixed number of inputs
# per target, `make fuzz` a duration. Plain `go test` already replays each target's seed corpus (testdata/fuzz/<Target>/); this adds
# new inputs. A failing input is written by Go to <package>/testdata/fuzz/<Target>/<hash>: keep it there
# (it then fails `go test` until the bug is fixed) or move it out once reported.
#
# A duration (-fuzztime 60s) on Go 1.26 can fail a target with a bare "context deadline exceeded" and no
# failing input: a race in Go's fuzz coordinator when the deadline fires (go.dev/issue/75804, fixed in
# Go 1.27). So a count (3000x) has no deadline to race, and a duration runs on FUZZ_GOTOOLCHAIN (go1.27.3,
# which the go command takes from the module proxy, about 76 MB once) unless the Go in use is newer.
#
#   FUZZTIME=60s scripts/fuzz.sh        # every target for a minute
#   scripts/fuzz.sh ./services/catalog  # only the targets of some packages
set -euo pipefail

cd "$(dirname "$0")/.."
GO="${GO:-go}"
fuzztime="${FUZZTIME:-3000x}"
if [[ ! "$fuzztime" =~ ^[0-9]+x$ ]]; then
	case "$("$GO" env GOVERSION)" in
	go1.2[0-6] | go1.2[0-6].* | go1.1[0-9]*) export GOTOOLCHAIN="${FUZZ_GOTOOLCHAIN:-go1.27.3}" ;;
	esac
fi

# Listing targets needs a test build of each package, so only the module's packages whose test files
# declare a fuzz target are asked; `go test -list` then says which targets each really has.
if [ "$#" -gt 0 ]; then
	pkgs=("$@")
else
	mapfile -t pkgs < <("$GO" list -e -f '{{$d := .Dir}}{{range .TestGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}' ./... |
		xargs -r grep -lE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' | xargs -r -n1 dirname | sort -u |
		sed "s|^$PWD|.|")
fi
if [ "${#pkgs[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
count=0
for pkg in "${pkgs[@]}"; do
	if ! targets="$("$GO" test -list '^Fuzz' "$pkg" 2>"$log")"; then
		echo "FAIL $pkg: cannot list its fuzz targets" >&2
		cat "$log" >&2
		exit 1
	fi
	for name in $(grep -E '^Fuzz' <<<"$targets"); do
		t0=$SECONDS
		if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			printf 'ok   %-28s %-24s %3ss\n' "$pkg" "$name" "$((SECONDS - t0))"
			count=$((count + 1))
		else
			printf 'FAIL %-28s %-24s %3ss\n' "$pkg" "$name" "$((SECONDS - t0))"
			cat "$log"
			exit 1
		fi
	done
done
echo "fuzz: $count targets passed, -fuzztime $fuzztime each, ${SECONDS}s in all (builds included)"
