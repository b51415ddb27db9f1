package fault

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/httpfault"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/interruptible"
)

var links = []string{"gateway-catalog", "gateway-orders", "gateway-payments", "orders-catalog", "orders-payments"}

func TestParse(t *testing.T) {
	cases := []struct {
		spec     string
		name     string // the fault's Name
		from, to time.Duration
	}{
		{"orders-payments:latency=500ms@30s-60s", "orders-payments: latency 500ms", 30 * time.Second, 60 * time.Second},
		{"orders-payments:latency=500ms,jitter=50ms,stream=both", "orders-payments: latency 500ms ±50ms both", 0, 0},
		{"orders-catalog:reset_peer,stream=up,toxicity=0.5@10s", "orders-catalog: reset_peer after 0s upstream on 50% of connections", 10 * time.Second, 0},
		{"gateway-catalog:bandwidth=16", "gateway-catalog: bandwidth 16 KB/s", 0, 0},
		{"gateway-catalog:slicer=64,variation=16,delay=1ms", "gateway-catalog: slicer 64±16 B every 1ms", 0, 0},
		{"orders-payments:slow_close=2s", "orders-payments: slow_close 2s", 0, 0},
		{"orders-payments:timeout=1s", "orders-payments: timeout 1s", 0, 0},
		{"orders-payments:limit_data=100", "orders-payments: limit_data 100 B", 0, 0},
		{"orders-payments:http503=0.3@5s-15s", "orders-payments: HTTP 503 on 30% of requests both", 5 * time.Second, 15 * time.Second},
		{"orders-payments:header_delay=300ms", "orders-payments: response headers delayed 300ms both", 0, 0},
		{"orders-payments:down@1s-2s", "orders-payments: down", time.Second, 2 * time.Second},
		{"payments:kill@5s-15s", "payments: container kill", 5 * time.Second, 15 * time.Second},
		{"payments:pause", "payments: container pause", 0, 0},
		{"catalog-3:start@3s", "catalog-3: container start", 3 * time.Second, 0},
		{"payments:down", "payments (2 links): payments:down", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			steps, err := Parse(tc.spec, links)
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != 1 {
				t.Fatalf("got %d steps", len(steps))
			}
			if got := steps[0].Fault.Name(); got != tc.name {
				t.Errorf("name %q, want %q", got, tc.name)
			}
			if steps[0].From != tc.from || steps[0].To != tc.to {
				t.Errorf("window %s-%s, want %s-%s", steps[0].From, steps[0].To, tc.from, tc.to)
			}
		})
	}
	steps, err := Parse("payments:kill@5s-15s; orders-catalog:latency=1s@20s-25s", links)
	if err != nil || len(steps) != 2 {
		t.Fatalf("two specs: %v, %d steps", err, len(steps))
	}
}

func TestServiceTargetsReachEveryReplica(t *testing.T) {
	links := []string{"gateway-catalog", "orders-catalog", "gateway-catalog-1", "orders-catalog-1",
		"gateway-catalog-2", "gateway-catalog-v2", "gateway-orders", "orders-payments-1", "catalog-nats"}
	names := func(spec string) []string {
		t.Helper()
		steps, err := Parse(spec, links)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		faults := []Fault{steps[0].Fault}
		if g, ok := steps[0].Fault.(Group); ok {
			faults = g.Faults
		}
		var out []string
		for _, f := range faults {
			link, _, _ := strings.Cut(f.Name(), ":")
			out = append(out, link)
		}
		return out
	}
	for spec, want := range map[string][]string{
		"catalog:down":           {"gateway-catalog", "orders-catalog", "gateway-catalog-1", "orders-catalog-1", "gateway-catalog-2", "gateway-catalog-v2"},
		"catalog-1:down":         {"gateway-catalog-1", "orders-catalog-1"},
		"gateway-catalog-2:down": {"gateway-catalog-2"},
		"payments:down":          {"orders-payments-1"},
		"orders:down":            {"gateway-orders"},
	} {
		if got := names(spec); !slices.Equal(got, want) {
			t.Errorf("%s acts on %v, want %v", spec, got, want)
		}
	}
}

func TestParseRejectsBadSpecs(t *testing.T) {
	cases := map[string]string{
		"no target":              "latency=500ms",
		"unknown link":           "warehouse:latency=1s",
		"unknown fault":          "orders-payments:earthquake",
		"bad duration":           "orders-payments:latency=fast",
		"negative window":        "orders-payments:latency=1s@-5s",
		"end before start":       "orders-payments:latency=1s@30s-10s",
		"bad stream":             "orders-payments:latency=1s,stream=sideways",
		"toxicity above one":     "orders-payments:latency=1s,toxicity=2",
		"unknown option":         "orders-payments:latency=1s,colour=red",
		"option without value":   "orders-payments:latency=1s,jitter",
		"status not an error":    "orders-payments:http200=0.5",
		"rate above one":         "orders-payments:http503=1.5",
		"container fault a link": "orders-payments:kill",
		"down with a value":      "orders-payments:down=1",
		"empty":                  " ; ",
		"slicer without size":    "orders-payments:slicer",
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(spec, links); err == nil {
				t.Fatalf("Parse(%q) accepted a bad spec", spec)
			}
		})
	}
}

// recorder is a Fault that logs its calls.
type recorder struct {
	name      string
	log       *[]string
	injectErr error
}

func (r recorder) Name() string { return r.name }
func (r recorder) Inject(context.Context, Target) error {
	*r.log = append(*r.log, "on "+r.name)
	return r.injectErr
}
func (r recorder) Revert(context.Context, Target) error {
	*r.log = append(*r.log, "off "+r.name)
	return nil
}

func TestScheduleRollsBackWhatIsStillOn(t *testing.T) {
	var log []string
	s, err := NewSchedule(Target{},
		Step{Fault: recorder{name: "a", log: &log}, From: 0, To: time.Second},
		Step{Fault: recorder{name: "b", log: &log}, From: time.Second},
		Step{Fault: recorder{name: "c", log: &log, injectErr: errors.New("half applied")}, From: time.Second},
		Step{Fault: recorder{name: "never", log: &log}, From: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Start(time.Now())
	_ = s.Inject(ctx, 0)
	_ = s.Revert(ctx, 0)
	_ = s.Revert(ctx, 0) // reverting twice is a no-op
	_ = s.Inject(ctx, 1)
	if err := s.Inject(ctx, 2); err == nil {
		t.Fatal("the failing inject did not report its error")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := "on a,off a,on b,on c,off c,off b"
	if got := strings.Join(log, ","); got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	evs := s.Events()
	if len(evs) != 6 || !evs[0].On || evs[1].On || evs[3].Error == "" {
		t.Fatalf("events %+v", evs)
	}
	if acts := s.Actions(); len(acts) != 5 { // a on/off, b on, c on, never on
		t.Fatalf("%d actions, want 5", len(acts))
	}
}

// slowRevert is a Disabler whose clean-up takes a while, as removing a toxic from a link whose client
// has gone does.
type slowRevert struct {
	recorder
	cleanup time.Duration
}

func (r slowRevert) Disable(context.Context, Target) error {
	*r.log = append(*r.log, "disable "+r.name)
	return nil
}
func (r slowRevert) Revert(ctx context.Context, t Target) error {
	time.Sleep(r.cleanup)
	return r.recorder.Revert(ctx, t)
}

func TestScheduleCountsADisabledFaultOffBeforeItsCleanUp(t *testing.T) {
	var log []string
	f := slowRevert{recorder: recorder{name: "bandwidth", log: &log}, cleanup: 300 * time.Millisecond}
	s, err := NewSchedule(Target{}, Step{Fault: f, From: 0, To: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Start(time.Now())
	if err := s.Inject(ctx, 0); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	if err := s.Revert(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(log, ","), "on bandwidth,disable bandwidth,off bandwidth"; got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	evs := s.Events()
	if len(evs) != 2 || evs[1].On {
		t.Fatalf("events %+v", evs)
	}
	if off := evs[1].At.Sub(asked); off >= f.cleanup {
		t.Fatalf("off recorded %s after the revert was asked for: after the clean-up, not when the fault stopped", off)
	}
}

func TestNewScheduleRejectsBadSteps(t *testing.T) {
	var log []string
	f := recorder{name: "a", log: &log}
	for _, st := range []Step{{}, {Fault: f, From: -time.Second}, {Fault: f, From: 2 * time.Second, To: time.Second}} {
		if _, err := NewSchedule(Target{}, st); err == nil {
			t.Errorf("step %+v accepted", st)
		}
	}
}

// TestToxicsOnToxiproxy applies every kind of link fault to a real (in-process) Toxiproxy API and checks
// that each shows up with its attributes and is gone after Revert.
func TestToxicsOnToxiproxy(t *testing.T) {
	httpfault.Register()
	interruptible.Register()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	api := httptest.NewServer(server.Routes())
	defer api.Close()
	client := toxiclient.NewClient(api.URL)
	if _, err := client.CreateProxy("orders-payments", "127.0.0.1:0", "127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	target := Target{Toxiproxy: client}
	ctx := context.Background()
	faults := []struct {
		fault  Fault
		toxics int
	}{
		{Latency("orders-payments", 500*time.Millisecond, 50*time.Millisecond).On(Both), 2},
		{Bandwidth("orders-payments", 8), 1},
		{SlowClose("orders-payments", time.Second).On(Upstream), 1},
		{Timeout("orders-payments", time.Second).WithToxicity(0.5), 1},
		{ResetPeer("orders-payments", 0), 1},
		{Slicer("orders-payments", 64, 8, time.Millisecond), 1},
		{LimitData("orders-payments", 1000), 1},
		{HTTPError("orders-payments", 503, 0.5).WithToxicity(0.1), 2},
		{HeaderDelay("orders-payments", 300*time.Millisecond), 2},
	}
	p, err := client.Proxy("orders-payments")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range faults {
		if err := tc.fault.Inject(ctx, target); err != nil {
			t.Fatalf("%s: %v", tc.fault.Name(), err)
		}
		toxics, err := p.Toxics()
		if err != nil {
			t.Fatal(err)
		}
		if len(toxics) != tc.toxics {
			t.Fatalf("%s: %d toxics on the proxy, want %d", tc.fault.Name(), len(toxics), tc.toxics)
		}
		if tx := tc.fault.(*Toxic); tx.Type == "http_fault" && toxics[0].Toxicity != 1 {
			t.Fatalf("%s: http_fault toxicity %v, want 1", tx.Name(), toxics[0].Toxicity)
		}
		// Disable leaves the toxics in place but inert (http_fault is reverted outright).
		tx := tc.fault.(*Toxic)
		if err := tx.Disable(ctx, target); err != nil {
			t.Fatalf("%s disable: %v", tx.Name(), err)
		}
		toxics, err = p.Toxics()
		if err != nil {
			t.Fatal(err)
		}
		if tx.Type == "http_fault" {
			if len(toxics) != 0 {
				t.Fatalf("%s: %d toxics left after disable, want it reverted", tx.Name(), len(toxics))
			}
		} else {
			if len(toxics) != tc.toxics {
				t.Fatalf("%s: %d toxics after disable, want %d", tx.Name(), len(toxics), tc.toxics)
			}
			for _, got := range toxics {
				switch tx.Type {
				case "bandwidth":
					if got.Toxicity != 1 || got.Attributes["rate"] != float64(int64(1)<<40) {
						t.Fatalf("%s disabled: toxicity %v attributes %v, want a pass-through on every connection", tx.Name(), got.Toxicity, got.Attributes)
					}
				case "slicer":
					if got.Toxicity != 1 || got.Attributes["average_size"] != float64(1<<30) || got.Attributes["delay"] != float64(0) {
						t.Fatalf("%s disabled: toxicity %v attributes %v, want a pass-through on every connection", tx.Name(), got.Toxicity, got.Attributes)
					}
				default:
					if got.Toxicity != 0 {
						t.Fatalf("%s disabled: toxicity %v, want 0", tx.Name(), got.Toxicity)
					}
				}
			}
		}
		if err := tc.fault.Revert(ctx, target); err != nil {
			t.Fatalf("%s revert: %v", tc.fault.Name(), err)
		}
		if toxics, _ := p.Toxics(); len(toxics) != 0 {
			t.Fatalf("%s: %d toxics left after revert", tc.fault.Name(), len(toxics))
		}
	}

	down := LinkDown{Link: "orders-payments"}
	if err := down.Inject(ctx, target); err != nil {
		t.Fatal(err)
	}
	if p, _ := client.Proxy("orders-payments"); p.Enabled {
		t.Fatal("proxy still enabled while the link is down")
	}
	if err := down.Revert(ctx, target); err != nil {
		t.Fatal(err)
	}
	if p, _ := client.Proxy("orders-payments"); !p.Enabled {
		t.Fatal("proxy not enabled again after the link came back")
	}
}

// containerLog records the container calls a fault makes.
type containerLog []string

func (c *containerLog) add(op, svc string) error                         { *c = append(*c, op+" "+svc); return nil }
func (c *containerLog) StopService(_ context.Context, s string) error    { return c.add("stop", s) }
func (c *containerLog) KillService(_ context.Context, s string) error    { return c.add("kill", s) }
func (c *containerLog) StartService(_ context.Context, s string) error   { return c.add("start", s) }
func (c *containerLog) PauseService(_ context.Context, s string) error   { return c.add("pause", s) }
func (c *containerLog) UnpauseService(_ context.Context, s string) error { return c.add("unpause", s) }
func (c *containerLog) RestartService(_ context.Context, s string) error { return c.add("restart", s) }

// TestContainerActions checks what each container fault does on and off: a standby container started
// is stopped again, a killed one started again.
func TestContainerActions(t *testing.T) {
	for _, tc := range []struct {
		action ContainerAction
		want   string
	}{
		{Kill, "kill catalog-2,start catalog-2"},
		{Stop, "stop catalog-2,start catalog-2"},
		{Pause, "pause catalog-2,unpause catalog-2"},
		{Restart, "restart catalog-2"},
		{Start, "start catalog-2,stop catalog-2"},
	} {
		var log containerLog
		f := Container{Service: "catalog-2", Action: tc.action}
		target := Target{Containers: &log}
		if err := f.Inject(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		if err := f.Revert(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(log, ","); got != tc.want {
			t.Errorf("%s: calls %q, want %q", tc.action, got, tc.want)
		}
	}
}
