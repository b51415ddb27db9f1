package platform_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

// BeforeDrain runs once Run is told to stop and while the server still answers, so an instance can
// leave the registry before it stops serving.
func TestRunCallsBeforeDrainWhileStillServing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	servedDuringDrain := make(chan error, 1)
	calls := 0
	svc := &platform.Service{
		Name:     "test",
		API:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { platform.WriteJSON(w, 200, map[string]string{}) }),
		Registry: platform.NewRegistry(),
		Logger:   platform.NewLogger(io.Discard, "test", 0),
		BeforeDrain: func(ctx context.Context) {
			calls++
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			servedDuringDrain <- err
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- platform.Run(ctx, svc, addr, 10*time.Second) }()
	waitHealthy(t, "http://"+addr+"/healthz")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if calls != 1 {
		t.Fatalf("BeforeDrain ran %d times, want 1", calls)
	}
	if err := <-servedDuringDrain; err != nil {
		t.Fatalf("server stopped answering before BeforeDrain returned: %v", err)
	}
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
