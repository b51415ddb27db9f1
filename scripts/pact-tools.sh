#!/usr/bin/env bash
# Provisions the Pact tooling the contract tests use, into .cache/pact/ under the repository root:
#   lib/libpact_ffi.so  Pact FFI 0.4.28 (from @pact-foundation/pact-core-linux-x64-glibc@18.1.0), the version
#                       pact-go v2.4.3 links against (the 20.x packages ship FFI 0.5, which it cannot use).
#   cli/pact            the official Rust `pact` CLI (from @pact-foundation/pact-cli-linux-x64@18.1.2; a static
#                       binary that needs nothing beside it).
# Idempotent: it downloads only when a file is missing, so tests never download anything themselves.
# Needs only node/npm (npm pack fetches from the npm registry). Tests that link pact-go need
#   CGO_LDFLAGS=-L<repo>/.cache/pact/lib  LD_LIBRARY_PATH=<repo>/.cache/pact/lib
set -euo pipefail

FFI_PKG="@pact-foundation/pact-core-linux-x64-glibc@18.1.0"
FFI_SHA256="f2e805e6433afa2cabc3ad3c309786a975075319dcb370c737e0041b4bff9887"
CLI_PKG="@pact-foundation/pact-cli-linux-x64@18.1.2"
CLI_SHA256="d69be30fb034789e9cbd8dc170fd2bc794860e8202c6b9144585adc2ecec345d"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/pact"
lib="$cache/lib/libpact_ffi.so"
cli="$cache/cli/pact"

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) ;;
*)
	echo "pact-tools: only linux x86_64 is provisioned (this is $(uname -s)-$(uname -m))" >&2
	exit 1
	;;
esac

# fetch_pkg SPEC MEMBER SHA256 DEST: npm-packs SPEC into a temp dir, checks package/MEMBER against SHA256
# (the exact build the tests were proven with) and installs it as DEST atomically, so a half-written file
# never looks like a cached one.
fetch_pkg() {
	local spec="$1" member="$2" want="$3" dest="$4" tmp got
	command -v npm >/dev/null || {
		echo "pact-tools: npm is required to fetch $spec" >&2
		exit 1
	}
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"; trap - RETURN' RETURN
	echo "pact-tools: fetching $spec" >&2
	(cd "$tmp" && npm pack --silent "$spec" >/dev/null)
	tar -xzf "$tmp"/*.tgz -C "$tmp" "package/$member"
	got="$(sha256sum "$tmp/package/$member" | cut -d' ' -f1)"
	if [ "$got" != "$want" ]; then
		echo "pact-tools: $spec $member has sha256 $got, want $want" >&2
		exit 1
	fi
	mkdir -p "$(dirname "$dest")"
	install -m 0755 "$tmp/package/$member" "$dest.tmp"
	mv -f "$dest.tmp" "$dest"
}

[ -s "$lib" ] || fetch_pkg "$FFI_PKG" prebuilds/linux-x64/libpact_ffi.so "$FFI_SHA256" "$lib"
[ -x "$cli" ] || fetch_pkg "$CLI_PKG" standalone/pact "$CLI_SHA256" "$cli"

"$cli" --help >/dev/null
cli_version="$("$cli" broker --version)"

echo "pact-tools: ready"
echo "  pact CLI:    $cli ($cli_version)"
echo "  libpact_ffi: $lib"
echo "  for pact-go: export CGO_LDFLAGS=-L$cache/lib LD_LIBRARY_PATH=$cache/lib"
