package loadtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseTarget reads a base URL to load and, unless allowRemote, refuses any host that is not loopback
// (localhost, 127.0.0.0/8, ::1): on a shared machine a load generator must not be pointed elsewhere by
// a typo. Host names other than localhost are refused rather than resolved, since resolution could
// change between the check and the run.
func ParseTarget(raw string, allowRemote bool) (*url.URL, error) {
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
		return nil, fmt.Errorf("target %q: want an http:// or https:// URL", raw)
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", raw, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("target %q: no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target %q: a base URL takes no query or fragment", raw)
	}
	if !allowRemote && !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("target %q is not a loopback address (localhost, 127.0.0.0/8, ::1); pass --allow-remote to load it anyway", raw)
	}
	return u, nil
}

// IsLoopback reports whether host (a name or an IP, without port) is loopback.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
