package interruptible_test

import (
	"bytes"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/interruptible"
)

// proxyTo starts a Toxiproxy API with the lab's toxics and one proxy in front of upstream.
func proxyTo(t *testing.T, upstream net.Listener) *toxiclient.Proxy {
	t.Helper()
	interruptible.Register()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	api := httptest.NewServer(server.Routes())
	t.Cleanup(api.Close)
	proxy, err := toxiclient.NewClient(api.URL).CreateProxy("link", "127.0.0.1:0", upstream.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Delete() })
	return proxy
}

// throttle puts the lab's bandwidth (rate KB/s) and then its slicer on the proxy's answers.
func throttle(t *testing.T, proxy *toxiclient.Proxy, rate int, slicer toxiclient.Attributes) {
	t.Helper()
	if _, err := proxy.AddToxic("bandwidth", "bandwidth", "downstream", 1, toxiclient.Attributes{"rate": rate}); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.AddToxic("slicer", "slicer", "downstream", 1, slicer); err != nil {
		t.Fatal(err)
	}
}

// dial connects to the proxy; the connection is closed when the test ends.
func dial(t *testing.T, proxy *toxiclient.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", proxy.Listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// serve answers every connection with data, then closes it.
func serve(t *testing.T, data []byte) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write(data)
			}()
		}
	}()
	return l
}

// The case that hangs upstream's toxics: the client stops reading, the link backs up behind the
// bandwidth and slicer toxics, and they are removed. The removals must return (a hung one holds the
// proxy's lock and every later API call times out), and the proxy must keep working.
func TestRemovingToxicsOfAStalledLinkReturns(t *testing.T) {
	upstream := serve(t, bytes.Repeat([]byte("x"), 64<<20))
	proxy := proxyTo(t, upstream)
	throttle(t, proxy, 10_000, toxiclient.Attributes{"average_size": 64, "size_variation": 16, "delay": 10})
	dial(t, proxy)          // a client that never reads
	time.Sleep(time.Second) // let the link back up: the client reads nothing

	done := make(chan error, 2)
	go func() {
		err := proxy.RemoveToxic("slicer")
		if err == nil {
			err = proxy.RemoveToxic("bandwidth")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("removing the toxics: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("removing the toxics of a stalled link did not return within 20 s")
	}
	if toxics, err := proxy.Toxics(); err != nil || len(toxics) != 0 {
		t.Fatalf("toxics left %v, %v", toxics, err)
	}
}

// Data still arrives whole and in order, at the rate asked for, in slices.
func TestBandwidthAndSlicerKeepTheData(t *testing.T) {
	want := make([]byte, 30_000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	proxy := proxyTo(t, serve(t, want))
	throttle(t, proxy, 20, toxiclient.Attributes{"average_size": 500, "size_variation": 100, "delay": 100})
	c := dial(t, proxy)
	begin := time.Now()
	got, err := io.ReadAll(c)
	took := time.Since(begin)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (err %v), want the upstream's %d intact", len(got), err, len(want))
	}
	// 30 KB at 20 KB/s: 1.5 s, give or take a 100 ms step and the machine.
	if took < 1200*time.Millisecond || took > 4*time.Second {
		t.Errorf("30 KB at 20 KB/s took %s, want about 1.5 s", took)
	}
}

// The lab's fault off: the toxics of a link whose client has stopped reading become pass-throughs. The
// updates interrupt toxics blocked handing data on; they must return at once (not after the 5 s a flush
// to a stalled stage may take), and what the toxics held must reach the client, whole and in order,
// once it reads again.
func TestPassThroughUpdateOfAStalledLinkReturnsAtOnceAndKeepsTheData(t *testing.T) {
	want := make([]byte, 16<<20)
	for i := range want {
		want[i] = byte(i*7 + i>>11)
	}
	proxy := proxyTo(t, serve(t, want))
	throttle(t, proxy, 200_000, toxiclient.Attributes{"average_size": 16000, "size_variation": 100, "delay": 10})
	c := dial(t, proxy)
	// The client reads nothing, into a small buffer: the link backs up to the toxics.
	_ = c.SetReadBuffer(16 << 10)
	time.Sleep(time.Second)

	for name, attrs := range map[string]toxiclient.Attributes{
		"slicer":    {"average_size": 1 << 30, "size_variation": 0, "delay": 0},
		"bandwidth": {"rate": int64(1) << 40},
	} {
		begin := time.Now()
		if _, err := proxy.UpdateToxic(name, 1, attrs); err != nil {
			t.Fatalf("update %s: %v", name, err)
		}
		if took := time.Since(begin); took > time.Second {
			t.Errorf("updating %s on a stalled link took %s, want it at once", name, took)
		}
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (err %v), want the upstream's %d intact (first difference at %d)", len(got), err, len(want), firstDiff(got, want))
	}
	for _, name := range []string{"slicer", "bandwidth"} {
		if err := proxy.RemoveToxic(name); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
