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
	defaultDuration = 10 * time.Minute // SOAK_DURATION
	sampleEvery     = 10 * time.Second // SOAK_SAMPLE_EVERY
	// The capacity probe climbs in steps of probeStep requests/s held for probeHold each; a step is
	// sustained when, in each of its seconds but the first, ≥ 99% of the requests due succeed and their
	// p99 is at most probeP99.
	probeStep = 50.0
	probeHold = 5 * time.Second
	probeP99  = 500.0 // ms
	// Growth allowed between the early window (just after warm-up) and the late window (the last
	// fifth): relative, plus an absolute floor for small counts.
	goroutineGrowth = 0.20
	goroutineSlack  = 20
	heapGrowth      = 0.25
	heapSlack       = 8 << 20 // bytes
)

// TestSoak loads the shop at half its measured capacity (or SOAK_RATE) for SOAK_DURATION and fails if
// the goroutine count or the live heap grows from the early to the late part of the run.
func TestSoak(t *testing.T) {
	duration := envDuration(t, "SOAK_DURATION", defaultDuration)
	every := envDuration(t, "SOAK_SAMPLE_EVERY", sampleEvery)
	ctx := context.Background()
	gw := startShop(t)

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
		// Let the overload of the probe's last step drain before the baseline is taken.
		time.Sleep(15 * time.Second)
	}

	sampler := &sampler{url: gw.URL + "/metrics", every: every}
	stop := sampler.start(t)
	res, err := loadtest.Run(ctx, loadtest.Options{
		Profile:     loadtest.Constant(rate, duration),
		Mix:         mix,
		MaxRequests: uint64(rate*duration.Seconds()) + 1000,
		MaxInFlight: loadtest.DefaultMaxInFlight,
		Timeout:     5 * time.Second,
		Client:      client,
	})
	samples := stop()
	if err != nil {
		t.Fatal(err)
	}
	tot := res.Totals
	t.Logf("load: %d scheduled, %d ok, %d failed %v, %d dropped; %.1f ok/s; p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		tot.Scheduled, tot.OK, tot.Failed(), tot.Errors, tot.Dropped, tot.Throughput, tot.Latency.P50, tot.Latency.P99, tot.Latency.Max)
	if tot.ErrorRate > 0.01 {
		t.Errorf("error rate %.2f%% at half capacity, want < 1%%", 100*tot.ErrorRate)
	}
	checkGrowth(t, samples, duration)
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

func scrape(u string) (goroutines, heap float64, err error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
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

// checkGrowth compares the early window (20–40% of the run, after the warm-up fills pools and caches)
// with the late one (the last 20%), by medians, and logs the samples and the trend.
func checkGrowth(t *testing.T, samples []sample, duration time.Duration) {
	t.Helper()
	window := func(from, to float64) (gs, hs []float64) {
		for _, s := range samples {
			if f := float64(s.at) / float64(duration); f >= from && f <= to {
				gs, hs = append(gs, s.goroutines), append(hs, s.heapInUse)
			}
		}
		return gs, hs
	}
	earlyG, earlyH := window(0.2, 0.4)
	lateG, lateH := window(0.8, 1.01)
	if len(earlyG) < 2 || len(lateG) < 2 {
		t.Fatalf("%d early and %d late samples: the run is too short for its sampling interval", len(earlyG), len(lateG))
	}
	for _, s := range samples {
		if s.at%time.Minute < 10*time.Second || s.at > duration-10*time.Second {
			t.Logf("t=%4.0fs goroutines %5.0f heap in use %6.1f MiB", s.at.Seconds(), s.goroutines, s.heapInUse/(1<<20))
		}
	}
	gEarly, gLate := median(earlyG), median(lateG)
	hEarly, hLate := median(earlyH), median(lateH)
	_, steady := window(0.2, 1.01)
	t.Logf("goroutines: early %.0f, late %.0f (allowed ≤ %.0f); heap in use: early %.1f MiB, late %.1f MiB (allowed ≤ %.1f MiB); heap trend %+.2f MiB/min",
		gEarly, gLate, gEarly*(1+goroutineGrowth)+goroutineSlack, hEarly/(1<<20), hLate/(1<<20),
		(hEarly*(1+heapGrowth)+heapSlack)/(1<<20), trendPerMinute(samples, steady)/(1<<20))
	if gLate > gEarly*(1+goroutineGrowth)+goroutineSlack {
		t.Errorf("goroutines grew from %.0f to %.0f", gEarly, gLate)
	}
	if hLate > hEarly*(1+heapGrowth)+heapSlack {
		t.Errorf("live heap grew from %.1f MiB to %.1f MiB", hEarly/(1<<20), hLate/(1<<20))
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// trendPerMinute is the least-squares slope of the heap samples after the warm-up (the last len(ys)
// samples), per minute.
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
