package shed

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/policy"
)

func TestShedsAboveTheBound(t *testing.T) {
	s, err := New(Config{MaxInFlight: 2, RetryAfter: 3 * time.Second}, policy.Options{Service: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 2), make(chan struct{})
	h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(204)
	}))
	codes := make(chan int, 2)
	for range 2 {
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/orders", nil))
			codes <- w.Code
		}()
	}
	<-entered
	<-entered
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/orders", nil))
	if w.Code != 503 || w.Header().Get("Retry-After") != "3" {
		t.Fatalf("third request: %d Retry-After %q, want 503 3", w.Code, w.Header().Get("Retry-After"))
	}
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "overloaded" {
		t.Fatalf("body %q", w.Body.String())
	}
	if s.Snapshot().InFlight != 2 || testutil.ToFloat64(s.shed) != 1 {
		t.Fatalf("snapshot %+v, shed %v", s.Snapshot(), testutil.ToFloat64(s.shed))
	}
	close(release)
	for range 2 {
		if c := <-codes; c != 204 {
			t.Fatalf("admitted request got %d", c)
		}
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/orders", nil))
	if w.Code != 204 || s.Snapshot().InFlight != 0 {
		t.Fatalf("after the load: %d, in flight %d", w.Code, s.Snapshot().InFlight)
	}
}

func TestOffAndValidation(t *testing.T) {
	s, err := New(Config{}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	next := http.NotFoundHandler()
	w := httptest.NewRecorder()
	s.Handler(next).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 404 {
		t.Fatalf("off: %d", w.Code)
	}
	if _, err := New(Config{MaxInFlight: -1}, policy.Options{}); err == nil {
		t.Fatal("negative bound accepted")
	}
}
