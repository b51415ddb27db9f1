// Package contracts holds the Pact contract tests of the shop's HTTP links and of the order events
// notifications consumes (docs/contracts.md).
//
// Everything here is test code behind the build tag `pact`, because pact-go links libpact_ffi through
// cgo (scripts/pact-tools.sh provisions it):
//
//		CGO_LDFLAGS=-L$PWD/.cache/pact/lib LD_LIBRARY_PATH=$PWD/.cache/pact/lib go test -tags pact ./contracts/
//
//	  - consumer_*_test.go: one test per link (caller-callee) that drives the callee's typed client, the
//	    code the caller really runs, against the Pact mock server and writes contracts/pacts/<link>.json.
//	  - consumer_notifications_orders_test.go: the message pact of the order events, each message
//	    published to an embedded NATS server and consumed by the real notifications service.
//	  - provider_*_test.go: one test per provider that verifies the pacts against the real service (its
//	    HTTP handler and SQLite store, in process) with a handler for every provider state; a state without
//	    a handler fails the interaction. orders also answers the message pact with the events its real
//	    saga and outbox relay publish; a message without a handler fails too.
//	  - negative_test.go: a provider that breaks a contract (an HTTP answer or an event) fails
//	    verification, and so does a pact naming a state or a message no handler knows.
//
// Tests run in file order: the consumer tests write the pact files the provider tests then verify.
// CONTRACTS_SOURCE=broker makes the provider tests fetch the pacts from a Pact Broker by consumer version
// selectors and publish their results instead (scripts/pact-flow.sh runs the whole CI flow that way).
package contracts
