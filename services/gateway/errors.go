package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/resilience-lab/lab/services/platform"
)

// The gateway's downstream links, named as in docs/architecture.md (metric label, policy env, proxy name).
const (
	LinkCatalog  = "gateway-catalog"
	LinkOrders   = "gateway-orders"
	LinkPayments = "gateway-payments"
)

// Codes the gateway adds to the shop's error vocabulary.
const (
	CodeUpstreamUnavailable = "upstream_unavailable" // 502: a downstream failed (5xx, transport, bad answer)
	CodeCircuitOpen         = "circuit_open"         // 503: the policy layer refuses to call the downstream
	CodeDeadlineExceeded    = "deadline_exceeded"    // 504: the request's budget ran out waiting downstream
)

// MapDownstreamError turns the failure of a call over link into what the gateway's caller sees. A
// downstream 4xx is a business outcome or a rejection of the caller's input and passes through with its
// status and code; everything else is the downstream's fault and becomes 502, 503 (isCircuitOpen, may be
// nil) or 504 (a deadline) with a message that names the service but never the cause, so internals
// (addresses, stack traces, SQL) cannot leak.
func MapDownstreamError(link string, err error, isCircuitOpen func(error) bool) *platform.Error {
	service := strings.TrimPrefix(link, "gateway-")
	if isCircuitOpen != nil && isCircuitOpen(err) {
		return platform.Errorf(http.StatusServiceUnavailable, CodeCircuitOpen, "the %s service is temporarily unavailable", service)
	}
	if e, ok := platform.AsError(err); ok {
		switch {
		case e.Status == http.StatusGatewayTimeout:
			return platform.Errorf(http.StatusGatewayTimeout, CodeDeadlineExceeded, "the %s service did not answer in time", service)
		case e.Status >= 400 && e.Status < 500:
			msg := e.Message
			if strings.HasPrefix(e.Code, "upstream_") { // not the shop's error shape: the body is raw text
				msg = "the " + service + " service rejected the request"
			}
			return &platform.Error{Status: e.Status, Code: e.Code, Message: msg}
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return platform.Errorf(http.StatusGatewayTimeout, CodeDeadlineExceeded, "the %s service did not answer in time", service)
	case errors.Is(err, context.Canceled):
		return platform.Errorf(499, "cancelled", "the caller went away")
	}
	return platform.Errorf(http.StatusBadGateway, CodeUpstreamUnavailable, "the %s service is unavailable", service)
}
