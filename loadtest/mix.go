package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

// Outcome is how one request ended. OK requests count towards success; Class names the kind of failure
// ("http_503", "timeout", …) or, for an OK request, an expected business outcome ("http_409"); it is
// empty for a plain success.
type Outcome struct {
	OK    bool
	Class string
}

// Classifier decides a request's Outcome from its response (whose body has been read already) or from
// the error that ended it (resp is nil then).
type Classifier func(resp *http.Response, err error) Outcome

// Error classes for failures without a response.
const (
	ClassTimeout   = "timeout"   // the per-request timeout expired
	ClassCanceled  = "canceled"  // the run was stopped while the request was in flight
	ClassConnect   = "connect"   // no connection could be made (refused, unreachable, DNS)
	ClassTransport = "transport" // any other transport failure (reset, malformed response, …)
	ClassBuild     = "build"     // the Kind could not build its request
	ClassDropped   = "dropped"   // not sent: MaxInFlight requests were already outstanding
)

// DefaultClassifier counts 2xx and 3xx answers as success and anything else as failure of class
// "http_<status>"; errors are classed by ErrorClass.
func DefaultClassifier(resp *http.Response, err error) Outcome {
	if err != nil {
		return Outcome{Class: ErrorClass(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Outcome{OK: true}
	}
	return Outcome{Class: StatusClass(resp.StatusCode)}
}

// ExpectStatus is DefaultClassifier that also accepts the given statuses (say 409 out_of_stock) as
// expected business outcomes: OK, with Class "http_<status>" so they are still counted apart.
func ExpectStatus(codes ...int) Classifier {
	expected := make(map[int]bool, len(codes))
	for _, c := range codes {
		expected[c] = true
	}
	return func(resp *http.Response, err error) Outcome {
		if err == nil && expected[resp.StatusCode] {
			return Outcome{OK: true, Class: StatusClass(resp.StatusCode)}
		}
		return DefaultClassifier(resp, err)
	}
}

// StatusClass is the class name of an HTTP status: "http_503".
func StatusClass(code int) string { return "http_" + strconv.Itoa(code) }

// ErrorClass names the failure behind a transport error.
func ErrorClass(err error) string {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.As(err, &dnsErr):
		return ClassConnect
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return ClassConnect
	default:
		return ClassTransport
	}
}

// Kind is one kind of request in a Mix.
type Kind struct {
	// Name identifies the kind in results ("place_order").
	Name string
	// Weight is the kind's share of the mix relative to the others (≥ 1).
	Weight int
	// Build makes the request numbered seq (0, 1, … across the whole run, unique per request). It must
	// be safe for concurrent use and should use ctx, which carries the per-request timeout.
	Build func(ctx context.Context, seq uint64) (*http.Request, error)
	// Classify decides the outcome; nil means DefaultClassifier.
	Classify Classifier
	// OnResponse, when set, is given the body of every response classified OK (to capture ids for later
	// requests, say). It runs on the request's goroutine, must be safe for concurrent use, and its time
	// counts into the request's latency. Without it bodies are read and discarded.
	OnResponse func(resp *http.Response, body []byte)
}

// Mix is a weighted set of request kinds. Which kind request seq gets is a pure function of seq, so a
// run's mix is reproducible and needs no lock or shared random source.
type Mix struct {
	kinds []Kind
	cum   []uint64 // cumulative weights
}

// NewMix checks the kinds (a name, a builder, weight ≥ 1, unique names) and returns their mix.
func NewMix(kinds ...Kind) (*Mix, error) {
	if len(kinds) == 0 {
		return nil, errors.New("mix has no request kinds")
	}
	m := &Mix{kinds: append([]Kind(nil), kinds...)}
	seen := map[string]bool{}
	var total uint64
	for i, k := range m.kinds {
		switch {
		case k.Name == "":
			return nil, fmt.Errorf("mix kind %d has no name", i)
		case seen[k.Name]:
			return nil, fmt.Errorf("mix kind %q appears twice", k.Name)
		case k.Weight < 1:
			return nil, fmt.Errorf("mix kind %q: weight %d must be ≥ 1", k.Name, k.Weight)
		case k.Build == nil:
			return nil, fmt.Errorf("mix kind %q has no Build function", k.Name)
		}
		seen[k.Name] = true
		if m.kinds[i].Classify == nil {
			m.kinds[i].Classify = DefaultClassifier
		}
		total += uint64(k.Weight)
		m.cum = append(m.cum, total)
	}
	return m, nil
}

// Kinds returns the mix's kinds in the order given.
func (m *Mix) Kinds() []Kind { return append([]Kind(nil), m.kinds...) }

// pick returns the index of the kind request seq gets: a well-mixed hash of seq spread over the weights,
// so any stretch of requests follows the weights closely.
func (m *Mix) pick(seq uint64) int {
	if len(m.kinds) == 1 {
		return 0
	}
	x := splitmix64(seq) % m.cum[len(m.cum)-1]
	for i, c := range m.cum {
		if x < c {
			return i
		}
	}
	return len(m.cum) - 1
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
