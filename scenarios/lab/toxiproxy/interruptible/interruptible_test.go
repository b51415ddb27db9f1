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
	if _, err := proxy.AddToxic("bandwidth", "bandwidth", "downstream", 1, toxiclient.Attributes{"rate": 10_000}); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.AddToxic("slicer", "slicer", "downstream", 1, toxiclient.Attributes{"average_size": 64, "size_variation": 16, "delay": 10}); err != nil {
		t.Fatal(err)
	}
	stalled, err := net.Dial("tcp", proxy.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
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
	if _, err := proxy.AddToxic("bandwidth", "bandwidth", "downstream", 1, toxiclient.Attributes{"rate": 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.AddToxic("slicer", "slicer", "downstream", 1, toxiclient.Attributes{"average_size": 500, "size_variation": 100, "delay": 100}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", proxy.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
