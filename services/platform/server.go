package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ReadyCheck reports whether one dependency of the service is usable.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Service describes one running service: its name, its handler for the API routes, and what makes it ready.
type Service struct {
	Name     string
	API      http.Handler // API routes; health, readiness and metrics are added by Handler()
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Ready    []ReadyCheck
	// Extra routes served beside the API (e.g. /debug/resilience), keyed by ServeMux pattern. Like
	// health, readiness and metrics they are operator routes: no service token is asked for them.
	Extra map[string]http.Handler
	// Auth, when enabled, makes every API route require a service token for audience Name; Callers
	// narrows who may call which paths (see ServiceAuth.RequireServiceToken).
	Auth    ServiceAuth
	Callers map[string][]string
	// Tracing receives the server span of every request; nil traces nothing but still passes a
	// caller's trace context on to the callees.
	Tracing trace.TracerProvider
	// BeforeDrain runs when Run is told to stop, while the server still serves: a registered instance
	// deregisters here, so callers stop picking it before it stops answering. nil: nothing.
	BeforeDrain func(ctx context.Context)

	once    sync.Once
	handler http.Handler
}

// NewLogger returns the JSON logger every service uses, carrying service and request ids.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(ContextHandler{h}).With("service", service)
}

// NewRegistry returns a fresh registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler assembles the full HTTP handler of s: /healthz, /readyz, /metrics and the API (behind service
// tokens when Auth is on), wrapped in panic recovery, request ids, deadline propagation, a server span,
// access logs and RED metrics. It is built once: the
// metrics it registers may be registered only once.
func (s *Service) Handler() http.Handler {
	s.once.Do(func() { s.handler = s.buildHandler() })
	return s.handler
}

func (s *Service) buildHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	for pattern, h := range s.Extra {
		mux.Handle(pattern, h)
	}
	api := s.API
	switch {
	case s.Auth.Enabled():
		api = s.Auth.RequireServiceToken(s.Name, s.Callers, api)
	case s.Callers != nil:
		// A service that names its callers expects tokens: say loudly that it is not checking them.
		s.Logger.Warn("service authentication is off (SERVICE_AUTH=off): the API answers calls without a service token")
	}
	mux.Handle("/", api)
	metrics := NewHTTPMetrics(s.Registry, s.Name)
	tp := s.Tracing
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return s.recoverPanics(requestContext(tracing(tp, s.accessLog(metrics.Middleware(mux)))))
}

func (s *Service) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	for _, c := range s.Ready {
		if err := c.Check(ctx); err != nil {
			checks[c.Name], ok = err.Error(), false
		} else {
			checks[c.Name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
}

func (s *Service) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
			return
		}
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		s.Logger.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "duration_ms", float64(time.Since(start).Microseconds())/1000)
	})
}

func (s *Service) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(r.Context(), "panic", "value", fmt.Sprint(v), "stack", string(debug.Stack()))
				WriteError(w, Errorf(http.StatusInternalServerError, "internal", "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// Run serves s on addr until ctx ends or the process gets SIGTERM/SIGINT, then runs s.BeforeDrain, stops
// accepting and drains in-flight requests, within drain in all, before returning.
func Run(ctx context.Context, s *Service, addr string, drain time.Duration) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       90 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.Logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if s.BeforeDrain != nil {
		s.BeforeDrain(sctx)
	}
	s.Logger.Info("draining", "timeout", drain.String())
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.Logger.Info("stopped")
	return nil
}

// CloserFunc makes a function an io.Closer (what a service's Open returns).
type CloserFunc func() error

func (f CloserFunc) Close() error { return f() }
