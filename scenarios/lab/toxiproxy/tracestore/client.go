package tracestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrNotFound is Fetch's error for a trace the store does not hold: never received (the exporters
// have not sent it yet, or its spans were not sampled), or evicted.
var ErrNotFound = errors.New("trace not in the store")

// Fetch reads trace id from the store served at baseURL (GET {baseURL}/traces/{id}) with hc; nil means
// a client that gives up after 5 s (a report must not hang on a stuck store).
func Fetch(ctx context.Context, hc *http.Client, baseURL, id string) (*Trace, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	u := strings.TrimSuffix(baseURL, "/") + "/traces/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("trace %s: %w", id, ErrNotFound)
	default:
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var t Trace
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &t, nil
}
