package measure

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const exposition = `# HELP resilience_breaker_state Circuit breaker state of a downstream: 0 closed, 1 half-open, 2 open.
# TYPE resilience_breaker_state gauge
resilience_breaker_state{downstream="orders-payments",service="orders"} 2
# HELP resilience_breaker_transitions_total Circuit breaker state changes.
# TYPE resilience_breaker_transitions_total counter
resilience_breaker_transitions_total{downstream="orders-payments",from="closed",service="orders",to="open"} 1
resilience_breaker_transitions_total{downstream="orders-payments",from="half-open",service="orders",to="open"} 2
# HELP resilience_retry_attempts_total Retries.
# TYPE resilience_retry_attempts_total counter
resilience_retry_attempts_total{downstream="orders-catalog",service="orders"} 7
# HELP http_server_requests_total HTTP requests served.
# TYPE http_server_requests_total counter
http_server_requests_total{code="201",method="POST",route="POST /orders",service="orders"} 40
http_server_requests_total{code="500",method="POST",route="POST /orders",service="orders"} 2
http_server_requests_total{code="200",method="GET",route="GET /healthz",service="orders"} 5
# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
`

func TestParseMetricsKeepsTheLabsSeries(t *testing.T) {
	got, err := ParseMetrics("orders", strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := map[Key]float64{
		{Service: "orders", Metric: "resilience_breaker_state", Downstream: "orders-payments"}:                         2,
		{Service: "orders", Metric: "resilience_breaker_transitions_total", Downstream: "orders-payments", To: "open"}: 3,
		{Service: "orders", Metric: "resilience_retry_attempts_total", Downstream: "orders-catalog"}:                   7,
		{Service: "orders", Metric: "http_server_requests_total", Route: "POST /orders"}:                               42,
		{Service: "orders", Metric: "http_server_requests_total", Route: "GET /healthz"}:                               5,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestParseMetricsRejectsGarbage(t *testing.T) {
	for _, in := range []string{"resilience_x{", "# TYPE a counter\na{b=\"c\"} notanumber\n"} {
		if _, err := ParseMetrics("x", strings.NewReader(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func TestIncreaseSurvivesARestart(t *testing.T) {
	k := Key{Service: "payments", Metric: "http_server_requests_total", Route: "POST /payments"}
	a := Scrape{Values: map[Key]float64{k: 100}}
	b := Scrape{Values: map[Key]float64{k: 130}}
	restarted := Scrape{Values: map[Key]float64{k: 4}}
	if d := Increase(a, b, k); d != 30 {
		t.Fatalf("increase %v, want 30", d)
	}
	if d := Increase(b, restarted, k); d != 4 {
		t.Fatalf("increase across a restart %v, want 4 (the count since the restart)", d)
	}
}

func TestScraperReadsEveryServiceAndNotesTheMissing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "payments") {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, exposition)
	}))
	defer srv.Close()
	s := &Scraper{URL: func(svc string) string { return srv.URL + "/" + svc }, Services: []string{"orders", "payments"}, Interval: time.Hour}
	sc := s.ScrapeOnce(context.Background())
	if len(sc.Missing) != 1 || sc.Missing[0] != "payments" {
		t.Fatalf("missing %v, want [payments]", sc.Missing)
	}
	if v := sc.Values[Key{Service: "orders", Metric: "resilience_retry_attempts_total", Downstream: "orders-catalog"}]; v != 7 {
		t.Fatalf("orders retries %v, want 7", v)
	}
	if keys := Keys([]Scrape{sc}, "resilience_breaker_state"); len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
}

func TestFetchParsesOnlyAnOKExposition(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, exposition)
	}))
	defer srv.Close()
	parsed := 0
	count := func(service string, r io.Reader) (map[string]float64, error) {
		parsed++
		var n float64
		err := EachSeries(r, func(string) bool { return true }, func(string, func(string) string, float64) { n++ })
		return map[string]float64{service: n}, err
	}
	got, err := Fetch(context.Background(), srv.Client(), "orders", srv.URL+"/metrics", count)
	if err != nil || got["orders"] != 8 {
		t.Fatalf("Fetch = %v, %v; want the 8 series of orders", got, err)
	}
	_, err = Fetch(context.Background(), srv.Client(), "payments", srv.URL+"/down", count)
	if err == nil || !strings.Contains(err.Error(), "metrics of payments: 503") {
		t.Fatalf("error %v, want it to name payments and the 503", err)
	}
	if parsed != 1 {
		t.Fatalf("parsed %d expositions, want only the OK one", parsed)
	}
}
