// Package platform holds what every service of the shop shares: the JSON error shape, strict request
// decoding, env configuration, structured logging with request ids, RED metrics, health endpoints, the
// HTTP server with graceful shutdown, and the helpers typed clients use to talk to a service.
//
// A service is laid out as go-kit's addsvc: service.go (domain) → endpoints.go (endpoint Set) →
// transport.go (HTTP), and its cmd/ main calls Run.
package platform
