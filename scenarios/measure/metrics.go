// Package measure observes the shop while a fault is on: it scrapes the services' /metrics (parsed with
// prometheus/common/expfmt) into per-interval policy series, reads the policies' event timelines, drives
// the shop's load mix through the loadtest engine, keeps a ledger of every order the gateway
// acknowledged, and derives what a scenario is judged on: time to detect, time to recover, worst
// second, retry amplification and data-loss accounting.
package measure

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Key names one series: a metric of one service, for one downstream (policies) or route (servers),
// and the extra label that splits it (the breaker transition's target state).
type Key struct {
	Service    string `json:"service"`
	Metric     string `json:"metric"`
	Downstream string `json:"downstream,omitempty"`
	Route      string `json:"route,omitempty"`
	To         string `json:"to,omitempty"`
	// Label is the label that splits an events series: outcome (events_handled_total) or event_type
	// (notifications_created_total).
	Label string `json:"label,omitempty"`
}

func (k Key) String() string {
	s := k.Service + " " + k.Metric
	for _, p := range []string{k.Downstream, k.Route, k.To, k.Label} {
		if p != "" {
			s += " " + p
		}
	}
	return s
}

// Scrape is one reading of every service's metrics that matter to the lab.
type Scrape struct {
	At time.Time
	// Values are the summed counters and gauges; Missing lists services that did not answer.
	Values  map[Key]float64
	Missing []string
}

// defaultScrapeClient bounds a scrape: a frozen service must not stall the series.
var defaultScrapeClient = &http.Client{Timeout: 2 * time.Second}

// Scraper polls the services' /metrics at a fixed interval.
type Scraper struct {
	// URL returns where to read service's metrics.
	URL      func(service string) string
	Services []string
	Interval time.Duration
	Client   *http.Client

	mu      sync.Mutex
	scrapes []Scrape
}

// Run scrapes until ctx ends.
func (s *Scraper) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		sc := s.ScrapeOnce(ctx)
		s.mu.Lock()
		s.scrapes = append(s.scrapes, sc)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scrapes returns what was read so far.
func (s *Scraper) Scrapes() []Scrape {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Scrape(nil), s.scrapes...)
}

// ScrapeOnce reads every service once, concurrently.
func (s *Scraper) ScrapeOnce(ctx context.Context) Scrape {
	at := time.Now()
	values, missing := ReadEach(ctx, s.Services, s.read)
	return Scrape{At: at, Values: values, Missing: missing}
}

// ReadEach calls read for every service concurrently and sums what they answered by key; it also
// returns, sorted, the services whose read failed.
func ReadEach[K comparable](ctx context.Context, services []string, read func(context.Context, string) (map[K]float64, error)) (map[K]float64, []string) {
	values := map[K]float64{}
	var missing []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			vals, err := read(ctx, svc)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, svc)
				return
			}
			for k, v := range vals {
				values[k] += v
			}
		})
	}
	wg.Wait()
	sort.Strings(missing)
	return values, missing
}

func (s *Scraper) read(ctx context.Context, service string) (map[Key]float64, error) {
	client := s.Client
	if client == nil {
		client = defaultScrapeClient
	}
	return Fetch(ctx, client, service, s.URL(service), ParseMetrics)
}

// Fetch GETs one service's text exposition from url and parses it: the one scrape that the lab's
// scraper and the per-instance probes share; a status other than 200 is an error naming the service.
func Fetch[K comparable](ctx context.Context, hc *http.Client, service, url string, parse func(service string, r io.Reader) (map[K]float64, error)) (map[K]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("metrics of %s: %s", service, resp.Status)
	}
	return parse(service, resp.Body)
}

// keptMetrics are the series the lab reads besides every resilience_* one: requests by route, and the
// events pipeline (outbox backlog, relay, consumer outcomes, orders waiting for payments).
var keptMetrics = map[string]bool{
	"http_server_requests_total": true, "events_outbox_backlog": true, "events_published_total": true,
	"events_publish_failures_total": true, "events_handled_total": true, "notifications_created_total": true,
	"orders_pending_payment": true, "events_consumer_pending_messages": true, "events_consumer_ack_pending_messages": true,
}

// ParseMetrics reads a Prometheus text exposition and keeps the lab's series: every resilience_*
// counter and gauge by downstream (and target state), http_server_requests_total by route, and the
// events pipeline's series (keptMetrics).
func ParseMetrics(service string, r io.Reader) (map[Key]float64, error) {
	out := map[Key]float64{}
	keep := func(name string) bool { return strings.HasPrefix(name, "resilience_") || keptMetrics[name] }
	err := EachSeries(r, keep, func(name string, label func(string) string, v float64) {
		k := Key{Service: service, Metric: name, Downstream: label("downstream"), Route: label("route"), To: label("to")}
		if strings.HasPrefix(name, "events_") || strings.HasPrefix(name, "notifications_") {
			k.Label = cmp.Or(label("outcome"), label("event_type"))
		}
		out[k] += v
	})
	if err != nil {
		return nil, fmt.Errorf("parse metrics of %s: %w", service, err)
	}
	return out, nil
}

// EachSeries parses a Prometheus text exposition and calls fn with every series of the families keep
// accepts: the family's name, a lookup of the series' labels ("" when absent) and its value (a
// histogram's or summary's sample count).
func EachSeries(r io.Reader, keep func(name string) bool, fn func(name string, label func(string) string, v float64)) error {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return err
	}
	for name, fam := range fams {
		if !keep(name) {
			continue
		}
		for _, m := range fam.GetMetric() {
			label := func(n string) string {
				for _, l := range m.GetLabel() {
					if l.GetName() == n {
						return l.GetValue()
					}
				}
				return ""
			}
			fn(name, label, value(fam.GetType(), m))
		}
	}
	return nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	case dto.MetricType_SUMMARY:
		return float64(m.GetSummary().GetSampleCount())
	}
	return math.NaN()
}

// IsCounter tells counters (which only grow, except across a restart) from gauges by name.
func IsCounter(metric string) bool { return strings.HasSuffix(metric, "_total") }

// Increase is how much counter k grew between two scrapes; a drop (the service restarted) counts the
// new value as growth since the restart.
func Increase(from, to Scrape, k Key) float64 {
	a, b := from.Values[k], to.Values[k]
	if b < a {
		return b
	}
	return b - a
}

// Keys returns every key seen in any scrape whose metric is name, in a stable order.
func Keys(scrapes []Scrape, name string) []Key {
	seen := map[Key]bool{}
	for _, s := range scrapes {
		for k := range s.Values {
			if k.Metric == name {
				seen[k] = true
			}
		}
	}
	out := make([]Key, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
