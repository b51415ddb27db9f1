package httpfault

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// pipe runs the toxic on one direction: it feeds input in chunks of chunkSize bytes and returns
// everything the toxic wrote once the input is closed.
func pipe(t *testing.T, toxic *Toxic, input string, chunkSize int) string {
	t.Helper()
	in := make(chan *stream.StreamChunk)
	out := make(chan *stream.StreamChunk, 1024)
	stub := toxics.NewToxicStub(in, out)
	stub.State = toxic.NewState()
	done := make(chan struct{})
	go func() { defer close(done); toxic.Pipe(stub) }()
	for b := []byte(input); len(b) > 0; {
		n := min(chunkSize, len(b))
		in <- &stream.StreamChunk{Data: b[:n], Timestamp: time.Now()}
		b = b[n:]
	}
	close(in)
	<-done
	var got bytes.Buffer
	for c := range out {
		got.Write(c.Data)
	}
	return got.String()
}

const (
	postReq    = "POST /payments HTTP/1.1\r\nHost: payments:8083\r\nIdempotency-Key: k1\r\nContent-Length: 13\r\n\r\n{\"order\":\"1\"}"
	chunkedReq = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: v\r\n\r\n"
	getReq     = "GET /products HTTP/1.1\r\nHost: catalog:8081\r\n\r\n"
	okResp     = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	chunkResp  = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
	markedResp = "HTTP/1.1 200 OK\r\nX-Request-Id: reslab-fault-500-00ab\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"status\":\"ok\"}\n\r\n0\r\n\r\n"
	noBodyResp = "HTTP/1.1 204 No Content\r\n\r\n"
)

func TestPassesTrafficUntouchedWhenNoFaultApplies(t *testing.T) {
	cases := []struct {
		name  string
		input string
	}{
		{"requests with a fixed body", postReq + getReq + postReq},
		{"chunked request with extension and trailer", chunkedReq + getReq},
		{"responses with fixed, chunked and no bodies", okResp + chunkResp + noBodyResp + okResp},
		{"not HTTP at all", "\x16\x03\x01 binary handshake\r\n\r\nmore"},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 3, 7, 64, 4096} {
			t.Run(fmt.Sprintf("%s/chunks of %d", tc.name, size), func(t *testing.T) {
				if got := pipe(t, &Toxic{Rate: 0}, tc.input, size); got != tc.input {
					t.Fatalf("output differs from input\n got: %q\nwant: %q", got, tc.input)
				}
			})
		}
	}
}

func TestPickedRequestsBecomeMarkedHealthProbes(t *testing.T) {
	for _, size := range []int{1, 5, 4096} {
		got := pipe(t, &Toxic{Rate: 1, Status: 503}, postReq+chunkedReq+getReq, size)
		r := bufio.NewReader(strings.NewReader(got))
		for i := 0; i < 3; i++ {
			req, err := http.ReadRequest(r)
			if err != nil {
				t.Fatalf("chunks of %d: request %d: %v (stream %q)", size, i, err, got)
			}
			if req.Method != http.MethodGet || req.URL.Path != "/healthz" || req.ContentLength != 0 {
				t.Fatalf("request %d = %s %s (length %d), want GET /healthz without body", i, req.Method, req.URL.Path, req.ContentLength)
			}
			if st, ok := markedStatus(req.Header.Get("X-Request-Id")); !ok || st != 503 {
				t.Fatalf("request %d marker %q, want status 503", i, req.Header.Get("X-Request-Id"))
			}
		}
		if rest, _ := io.ReadAll(r); len(rest) != 0 {
			t.Fatalf("chunks of %d: bytes of the dropped bodies leaked: %q", size, rest)
		}
	}
}

func TestMarkedResponsesAreReplacedByErrors(t *testing.T) {
	for _, size := range []int{1, 6, 4096} {
		got := pipe(t, &Toxic{}, okResp+markedResp+chunkResp, size)
		r := bufio.NewReader(strings.NewReader(got))
		wantStatus := []int{200, 500, 200}
		wantBody := []string{"{}", `"code":"injected_fault"`, "abcd"}
		for i := range wantStatus {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("chunks of %d: response %d: %v (stream %q)", size, i, err, got)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != wantStatus[i] || !strings.Contains(string(body), wantBody[i]) {
				t.Fatalf("response %d = %d %q, want %d containing %q", i, resp.StatusCode, body, wantStatus[i], wantBody[i])
			}
		}
	}
}

func TestHeaderDelayHoldsTheResponseAcrossInterruptions(t *testing.T) {
	toxic := &Toxic{HeaderDelay: int64(time.Hour / time.Millisecond)}
	in := make(chan *stream.StreamChunk, 1)
	out := make(chan *stream.StreamChunk, 16)
	stub := toxics.NewToxicStub(in, out)
	stub.State = toxic.NewState()
	done := make(chan struct{})
	go func() { defer close(done); toxic.Pipe(stub) }()
	in <- &stream.StreamChunk{Data: []byte(okResp), Timestamp: time.Now()}
	for len(in) > 0 { // wait until the toxic took the chunk
		time.Sleep(time.Millisecond)
	}
	stub.Interrupt <- struct{}{}
	<-done
	if len(out) != 0 {
		t.Fatalf("the response left before its header delay: %q", (<-out).Data)
	}
	// Removing the toxic must still deliver the held response, byte for byte.
	toxic.Cleanup(stub)
	if got := string((<-out).Data); got != okResp {
		t.Fatalf("after cleanup got %q, want %q", got, okResp)
	}
}

// TestThroughToxiproxy runs both halves on a real Toxiproxy proxy in front of a real HTTP server: picked
// requests never reach the server and come back with the injected status; the others are served.
func TestThroughToxiproxy(t *testing.T) {
	Register()
	var served atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id")) // as platform.Handler does
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, `{"status":"ok"}`)
			return
		}
		served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, strings.Repeat("x", 5000)) // big enough to be sent chunked
	}))
	defer upstream.Close()

	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(server, "shop", "127.0.0.1:0", strings.TrimPrefix(upstream.URL, "http://"))
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer proxy.Stop()
	for _, s := range []string{"downstream", "upstream"} {
		body := fmt.Sprintf(`{"name":"fault_%s","type":%q,"stream":%q,"toxicity":1,"attributes":{"status":503,"rate":0.5}}`, s, TypeName, s)
		if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second}
	var ok, injected int64
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+proxy.Listen+"/charge", strings.NewReader(`{"n":1}`))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 200 && len(body) == 5000:
			ok++
		case resp.StatusCode == 503 && strings.Contains(string(body), "injected_fault"):
			injected++
		default:
			t.Fatalf("request %d: unexpected answer %d %q", i, resp.StatusCode, body)
		}
	}
	if ok == 0 || injected == 0 {
		t.Fatalf("ok=%d injected=%d: want both at rate 0.5", ok, injected)
	}
	if served.Load() != ok {
		t.Fatalf("the server ran %d requests but %d were answered 200: injected ones must never run", served.Load(), ok)
	}
}
