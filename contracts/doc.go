// Package contracts holds the Pact contract tests of the shop's HTTP links (docs/contracts.md).
//
// Everything here is test code behind the build tag `pact`, because pact-go links libpact_ffi through
// cgo (scripts/pact-tools.sh provisions it):
//
//		CGO_LDFLAGS=-L$PWD/.cache/pact/lib LD_LIBRARY_PATH=$PWD/.cache/pact/lib go test -tags pact ./contracts/
//
//	  - consumer_*_test.go: one test per link (caller-callee) that drives the callee's typed client, the
//	    code the caller really runs, against the Pact mock server and writes contracts/pacts/<link>.json.
//	  - provider_*_test.go: one test per provider that verifies the pacts against the real service (its
//	    HTTP handler and SQLite store, in process) with a handler for every provider state; a state without
//	    a handler fails the interaction.
//	  - negative_test.go: a provider that breaks a contract fails verification, and so does a pact naming
//	    a state no handler knows.
//
// Tests run in file order: the consumer tests write the pact files the provider tests then verify.
// CONTRACTS_SOURCE=broker makes the provider tests fetch the pacts from a Pact Broker by consumer version
// selectors and publish their results instead (scripts/pact-flow.sh runs the whole CI flow that way).
package contracts
