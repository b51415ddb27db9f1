//go:build soak

package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/loadtest/mixfile"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// Settings of the soak, each overridable from the environment.
const (
	defaultDuration = 10 * time.Minute // SOAK_DURATION: the soak at half capacity
	defaultWarmup   = time.Minute      // SOAK_WARMUP: load before the baseline, to fill pools and caches
	sampleEvery     = 10 * time.Second // SOAK_SAMPLE_EVERY: the trend logged during the soak
	// The capacity probe climbs in steps of probeStep requests/s held for probeHold each; a step is
	// sustained when, in each of its seconds but the first, ≥ 99% of the requests due succeed and their
	// p99 is at most probeP99.
	probeStep = 50.0
	probeHold = 5 * time.Second
	probeP99  = 500.0 // ms
	// idleClose is the longest any keep-alive connection of the shop stays open idle (the platform's
	// and the load generator's IdleConnTimeout): once it has passed after the load, only what the shop
	// keeps for itself is left.
	idleClose = 90 * time.Second
	// Growth allowed from the baseline at rest (after the warm-up) to the end at rest: relative, plus an
	// absolute floor for small counts.
	goroutineGrowth = 0.05
	goroutineSlack  = 10
	heapGrowth      = 0.25
	heapSlack       = 8 << 20 // bytes
)

// TestSoak loads the shop at half its measured capacity (or SOAK_RATE) for SOAK_DURATION and fails if
// the shop at rest afterwards holds more goroutines or more live heap than at rest before. Under load
// both follow the work in flight, which on a shared machine swings with its contention, so the
// comparison is made at rest: the load stopped, nothing in flight, every idle connection timed out.
func TestSoak(t *testing.T) {
	duration := envDuration(t, "SOAK_DURATION", defaultDuration)
	warmup := envDuration(t, "SOAK_WARMUP", defaultWarmup)
	every := envDuration(t, "SOAK_SAMPLE_EVERY", sampleEvery)
	ctx := context.Background()
	gw := startShop(t)
	metrics := gw.URL + "/metrics"

	base, _ := url.Parse(gw.URL)
	client := loadtest.NewClient(loadtest.DefaultMaxInFlight)
	file, err := mixfile.Load(filepath.Join("..", "loadtest", "mixes", "shop.json"))
	if err != nil {
		t.Fatal(err)
	}
	mix, err := file.Build(ctx, base, client)
	if err != nil {
		t.Fatal(err)
	}

	rate, err := strconv.ParseFloat(os.Getenv("SOAK_RATE"), 64)
	if err != nil || rate <= 0 {
		capacity := probeCapacity(t, mix, client)
		rate = capacity / 2
		t.Logf("capacity %.0f requests/s (shop mix through the gateway, p99 ≤ %.0f ms, ≥ 99%% ok); soaking at %.0f/s", capacity, probeP99, rate)
	}
	load := func(d time.Duration) *loadtest.Result {
		t.Helper()
		res, err := loadtest.Run(ctx, loadtest.Options{
			Profile:     loadtest.Constant(rate, d),
			Mix:         mix,
			MaxRequests: uint64(rate*d.Seconds()) + 1000,
			MaxInFlight: loadtest.DefaultMaxInFlight,
			Timeout:     5 * time.Second,
			Client:      client,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	load(warmup)
	before := atRest(t, client, metrics)
	t.Logf("at rest after a %s warm-up: %.0f goroutines, %.1f MiB live heap", warmup, before.goroutines, before.heapInUse/(1<<20))

	stop := (&sampler{url: metrics, every: every}).start(t)
	res := load(duration)
	samples := stop()
	tot := res.Totals
	t.Logf("soak: %d scheduled, %d ok, %d failed %v, %d dropped; %.1f ok/s; p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		tot.Scheduled, tot.OK, tot.Failed(), tot.Errors, tot.Dropped, tot.Throughput, tot.Latency.P50, tot.Latency.P99, tot.Latency.Max)
	logTrend(t, samples, duration)
	if tot.ErrorRate > 0.01 {
		t.Errorf("error rate %.2f%% at half capacity, want < 1%%", 100*tot.ErrorRate)
	}

	after := atRest(t, client, metrics)
	t.Logf("at rest after the soak: %.0f goroutines (allowed ≤ %.0f), %.1f MiB live heap (allowed ≤ %.1f MiB)",
		after.goroutines, before.goroutines*(1+goroutineGrowth)+goroutineSlack,
		after.heapInUse/(1<<20), (before.heapInUse*(1+heapGrowth)+heapSlack)/(1<<20))
	if after.goroutines > before.goroutines*(1+goroutineGrowth)+goroutineSlack {
		t.Errorf("goroutines at rest grew from %.0f to %.0f over the soak", before.goroutines, after.goroutines)
	}
	if after.heapInUse > before.heapInUse*(1+heapGrowth)+heapSlack {
		t.Errorf("live heap at rest grew from %.1f MiB to %.1f MiB over the soak", before.heapInUse/(1<<20), after.heapInUse/(1<<20))
	}
}

// atRest waits until nothing is in flight and every idle connection has timed out, then returns the
// smallest of three samples 5 s apart (a background ticker may be mid-round in one of them).
func atRest(t *testing.T, client *http.Client, metrics string) sample {
	t.Helper()
	client.CloseIdleConnections()
	stopped := time.Now()
	for {
		inFlight, err := gauge(metrics, "http_server_requests_in_flight")
		if err != nil {
			t.Fatal(err)
		}
		// The scrape itself is the one request in flight.
		if inFlight <= 1 {
			break
		}
		if time.Since(stopped) > time.Minute {
			t.Fatalf("%.0f requests still in flight a minute after the load stopped", inFlight)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(time.Until(stopped.Add(idleClose + 5*time.Second)))
	var rest sample
	for i := range 3 {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		runtime.GC()
		g, h, err := scrape(metrics)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 || g < rest.goroutines {
			rest.goroutines = g
		}
		if i == 0 || h < rest.heapInUse {
			rest.heapInUse = h
		}
	}
	return rest
}

// startShop runs the whole shop in this process as the mains assemble it (ConfigFromEnv → Open →
// Handler), with a fresh service token secret and an embedded NATS, and returns the gateway's server.
func startShop(t *testing.T) *httptest.Server {
	t.Helper()
	broker := natstest.Start(t)
	dir := t.TempDir()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	open := func(name string, vars map[string]string, build func(*platform.Env) (*platform.Service, interface{ Close() error }, error)) *httptest.Server {
		t.Helper()
		vars["SERVICE_TOKEN_SECRET"] = hex.EncodeToString(secret)
		// SERVICE_TOKEN_TTL=10s makes every caller renew its tokens every 8 s under the load.
		if ttl := os.Getenv("SERVICE_TOKEN_TTL"); ttl != "" {
			vars["SERVICE_TOKEN_TTL"] = ttl
		}
		vars["NATS_URL"] = broker.URL()
		env := platform.EnvFrom(vars)
		svc, closer, err := build(env)
		if err == nil {
			err = env.Err()
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(func() { srv.Close(); closer.Close() })
		return srv
	}
	cat := open("catalog", map[string]string{"CATALOG_DB": filepath.Join(dir, "catalog.db")},
		func(env *platform.Env) (*platform.Service, interface{ Close() error }, error) {
			return catalog.Open(ctx, catalog.ConfigFromEnv(env), logger, platform.NewRegistry())
		})
	pay := open("payments", map[string]string{"PAYMENTS_DB": filepath.Join(dir, "payments.db")},
		func(env *platform.Env) (*platform.Service, interface{ Close() error }, error) {
			return payments.Open(ctx, payments.ConfigFromEnv(env), logger, platform.NewRegistry())
		})
	open("notifications", map[string]string{"NOTIFICATIONS_DB": filepath.Join(dir, "notifications.db")},
		func(env *platform.Env) (*platform.Service, interface{ Close() error }, error) {
			return notifications.Open(ctx, notifications.ConfigFromEnv(env), logger, platform.NewRegistry())
		})
	ord := open("orders", map[string]string{"ORDERS_DB": filepath.Join(dir, "orders.db"), "CATALOG_URL": cat.URL, "PAYMENTS_URL": pay.URL},
		func(env *platform.Env) (*platform.Service, interface{ Close() error }, error) {
			return orders.Open(ctx, orders.ConfigFromEnv(env), logger, platform.NewRegistry())
		})
	// The shop mix is one token subject: lift its per-client limit so the soak loads the services.
	return open("gateway", map[string]string{"CATALOG_URL": cat.URL, "ORDERS_URL": ord.URL, "PAYMENTS_URL": pay.URL,
		"GATEWAY_RATE_LIMIT_RPS": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000"},
		func(env *platform.Env) (*platform.Service, interface{ Close() error }, error) {
			return gateway.Open(ctx, gateway.ConfigFromEnv(env), logger, platform.NewRegistry())
		})
}

// probeCapacity climbs in steps until a step is not sustained and returns the last sustained rate.
func probeCapacity(t *testing.T, mix *loadtest.Mix, client *http.Client) float64 {
	t.Helper()
	const steps = 60
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var behind int
	res, err := loadtest.Run(ctx, loadtest.Options{
		Profile:     loadtest.Steps(probeStep, probeStep, probeHold, steps),
		Mix:         mix,
		MaxRequests: uint64(probeStep*steps*(steps+1)/2*probeHold.Seconds()) + 1000,
		Timeout:     5 * time.Second,
		Client:      client,
		// Stop climbing once the shop has clearly fallen behind for a few seconds.
		Progress: func(p loadtest.Progress) {
			if float64(p.Second.Completed) < 0.8*p.Second.Target || p.Second.Dropped > 0 {
				behind++
			} else {
				behind = 0
			}
			if behind >= 3 {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	perStep := int(probeHold / time.Second)
	capacity := 0.0
	for step := 0; (step+1)*perStep <= len(res.Seconds); step++ {
		ok := true
		for _, s := range res.Seconds[step*perStep+1 : (step+1)*perStep] {
			rate, _ := s.SuccessRate()
			ok = ok && rate >= 0.99 && s.Latency.P99 <= probeP99
		}
		if !ok {
			break
		}
		capacity = probeStep * float64(step+1)
	}
	if capacity == 0 {
		t.Fatalf("the shop did not sustain even %.0f requests/s", probeStep)
	}
	return capacity
}

// sample is the runtime state of the shop's process at one moment.
type sample struct {
	at         time.Duration
	goroutines float64
	heapInUse  float64 // bytes, right after a GC: the live heap, not garbage waiting
}

// sampler scrapes go_goroutines and go_memstats_heap_inuse_bytes from a service's /metrics. The shop
// runs in this process, so every service reports the same process; a GC just before each scrape makes
// the heap figure the live heap.
type sampler struct {
	url   string
	every time.Duration
}

func (s *sampler) start(t *testing.T) (stop func() []sample) {
	var (
		mu      sync.Mutex
		samples []sample
		done    = make(chan struct{})
		ended   = make(chan struct{})
	)
	begin := time.Now()
	take := func() {
		runtime.GC()
		g, h, err := scrape(s.url)
		if err != nil {
			t.Errorf("scrape %s: %v", s.url, err)
			return
		}
		mu.Lock()
		samples = append(samples, sample{time.Since(begin), g, h})
		mu.Unlock()
	}
	go func() {
		defer close(ended)
		tick := time.NewTicker(s.every)
		defer tick.Stop()
		take()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				take()
			}
		}
	}()
	return func() []sample {
		close(done)
		<-ended
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(samples)
	}
}

// gauge reads one gauge of the metrics at u.
func gauge(u, name string) (float64, error) {
	families, err := families(u)
	if err != nil {
		return 0, err
	}
	f, ok := families[name]
	if !ok || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("no %s at %s", name, u)
	}
	return f.GetMetric()[0].GetGauge().GetValue(), nil
}

func scrape(u string) (goroutines, heap float64, err error) {
	families, err := families(u)
	if err != nil {
		return 0, 0, err
	}
	g, okG := families["go_goroutines"]
	h, okH := families["go_memstats_heap_inuse_bytes"]
	if !okG || !okH || len(g.GetMetric()) == 0 || len(h.GetMetric()) == 0 {
		return 0, 0, fmt.Errorf("no go_goroutines or go_memstats_heap_inuse_bytes")
	}
	return g.GetMetric()[0].GetGauge().GetValue(), h.GetMetric()[0].GetGauge().GetValue(), nil
}

// logTrend logs a sample a minute and the trend of the live heap under load (least squares, per
// minute): context for the verdict at rest, not part of it.
func logTrend(t *testing.T, samples []sample, duration time.Duration) {
	t.Helper()
	if len(samples) == 0 {
		return
	}
	for _, s := range samples {
		if s.at%time.Minute < sampleEvery || s.at > duration-sampleEvery {
			t.Logf("under load t=%4.0fs: goroutines %5.0f, live heap %6.1f MiB", s.at.Seconds(), s.goroutines, s.heapInUse/(1<<20))
		}
	}
	heap := make([]float64, len(samples))
	for i, s := range samples {
		heap[i] = s.heapInUse
	}
	t.Logf("under load: goroutines median %.0f (min %.0f, max %.0f), live heap trend %+.2f MiB/min",
		median(goroutinesOf(samples)), slices.Min(goroutinesOf(samples)), slices.Max(goroutinesOf(samples)),
		trendPerMinute(samples, heap)/(1<<20))
}

func goroutinesOf(samples []sample) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = s.goroutines
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// trendPerMinute is the least-squares slope of ys (one value per sample of the last len(ys)) per minute.
func trendPerMinute(samples []sample, ys []float64) float64 {
	xs := make([]float64, 0, len(ys))
	for _, s := range samples[len(samples)-len(ys):] {
		xs = append(xs, s.at.Minutes())
	}
	var mx, my float64
	for i := range xs {
		mx, my = mx+xs[i], my+ys[i]
	}
	mx, my = mx/float64(len(xs)), my/float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 10m", key, v)
	}
	return d
}

// families scrapes the metrics at u.
func families(u string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}
