// Package broker is a Pact-Broker-compatible server: the subset of the Pact Broker's HAL API that the
// official Pact clients use (the `pact broker` CLI and the Rust verifier behind pact-go), kept in SQLite.
//
// It stores pacticipants, versions with branches and tags, pacts (deduplicated by content hash, as the
// Pact Broker's "pact versions"), verification results, environments and deployments, and answers the
// two questions the clients ask: which pacts must this provider verify (pacts for verification with
// consumer version selectors) and may this version be deployed (the matrix behind can-i-deploy).
//
// Layout: store.go (SQLite and migrations) → graph.go (the pure version/selector model, loaded from the
// store per query) → selectors.go and matrix.go (the two decisions, pure functions over a graph) →
// service.go (use cases, transactions, domain errors) → hal.go (the HAL representations) → transport.go
// (routes, decoding, auth) → broker.go (Config, Open). docs/contracts.md lists what is implemented.
package broker
