// Package httpfault is a Toxiproxy toxic that injects HTTP-level faults into an HTTP/1.1 link: it answers
// a fraction of requests with an error status without letting them reach the service, and delays the
// headers of responses (a slow time to first byte, unlike the latency toxic, which delays every chunk).
//
// Toxiproxy toxics see one direction of a connection each, so the toxic is added to both streams of a
// proxy, and each half recognises its role from the bytes it sees:
//
//   - upstream (requests): a request picked with probability Rate is replaced by a side-effect-free
//     `GET /healthz` carrying the marker request id `reslab-fault-<status>-<n>`; its body is dropped.
//   - downstream (responses): a response that echoes a marker id (every service echoes X-Request-Id) is
//     replaced by an error answer with that status in the shop's error shape; every other response is
//     held HeaderDelay before its headers go out.
//
// So a faulted request never runs: like a 503 from an overloaded server, and unlike a lost response,
// nothing happened that a retry could duplicate. Add the downstream half first and remove it last.
package httpfault

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// TypeName is the toxic's type in the Toxiproxy API.
const TypeName = "http_fault"

// MarkerPrefix starts the request id of a request the toxic answers itself.
const MarkerPrefix = "reslab-fault-"

// maxHeaderBytes bounds the header block the toxic buffers; a longer one is passed through untouched.
const maxHeaderBytes = 64 << 10

// Register adds the toxic to Toxiproxy's registry (a process-wide table the server reads).
func Register() { toxics.Register(TypeName, new(Toxic)) }

// Toxic is the configuration, shared by every connection of the proxy; it is never written to.
type Toxic struct {
	Status      int     `json:"status"`       // status of injected errors; 0 means 503
	Rate        float64 `json:"rate"`         // fraction of requests answered with Status, 0..1
	HeaderDelay int64   `json:"header_delay"` // milliseconds each response's headers are held
}

// role is what one half of a connection carries.
type role int

const (
	roleUnknown role = iota
	roleRequests
	roleResponses
	rolePassthrough // framing was lost (unknown protocol, body until close): bytes pass untouched
)

// phase is where the framer is inside the current message.
type phase int

const (
	phaseHeaders   phase = iota
	phaseBody            // bodyLeft bytes of a Content-Length body
	phaseChunkSize       // reading a chunk-size line
	phaseChunkData       // bodyLeft bytes of chunk data plus its CRLF
	phaseTrailers        // trailer lines after the last chunk, up to an empty line
)

// State is the per-connection framing state. It survives interruptions (Toxiproxy interrupts a toxic
// whenever another toxic on the proxy changes), so a message cut by an interruption is resumed.
type State struct {
	role     role
	phase    phase
	pending  []byte // a header block not yet forwarded
	line     []byte // the chunk-size or trailer line read so far (already forwarded)
	bodyLeft int64
	discard  bool // the current message's body is dropped (a replaced request or response)
	chunked  bool
}

// NewState implements toxics.StatefulToxic.
func (t *Toxic) NewState() interface{} { return new(State) }

// GetBufferSize lets a delayed response not stall the reads behind it.
func (t *Toxic) GetBufferSize() int { return 1024 }

func (t *Toxic) status() int {
	if t.Status < 100 || t.Status > 599 {
		return 503
	}
	return t.Status
}

// Pipe implements toxics.Toxic.
func (t *Toxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*State)
	if !t.process(stub, st, nil) { // a header block held when the previous run was interrupted
		return
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				st.flush(stub)
				stub.Close()
				return
			}
			if !t.process(stub, st, c.Data) {
				return
			}
		}
	}
}

// Cleanup forwards what the state still holds when the toxic is removed, so no byte is lost.
func (t *Toxic) Cleanup(stub *toxics.ToxicStub) { stub.State.(*State).flush(stub) }

func (st *State) flush(stub *toxics.ToxicStub) {
	if len(st.pending) > 0 && !st.discard {
		emit(stub, st.pending)
	}
	st.pending = nil
}

func emit(stub *toxics.ToxicStub, b []byte) {
	if len(b) == 0 {
		return
	}
	stub.Output <- &stream.StreamChunk{Data: append([]byte(nil), b...), Timestamp: time.Now()}
}

// process frames data into messages and forwards, replaces or delays them. It returns false when an
// interruption came during a header delay; the unsent header block stays pending in the state.
func (t *Toxic) process(stub *toxics.ToxicStub, st *State, data []byte) bool {
	for len(data) > 0 || (st.phase == phaseHeaders && bytes.Contains(st.pending, crlfcrlf)) {
		switch {
		case st.role == rolePassthrough:
			emit(stub, data)
			return true
		case st.phase == phaseHeaders:
			st.pending = append(st.pending, data...)
			data = nil
			end := bytes.Index(st.pending, crlfcrlf)
			if end < 0 {
				if len(st.pending) > maxHeaderBytes {
					st.role = rolePassthrough
					emit(stub, st.pending)
					st.pending = nil
				}
				return true
			}
			head, rest := st.pending[:end+4], st.pending[end+4:]
			if !t.message(stub, st, head) {
				return false // interrupted while holding the headers: all of pending stays
			}
			data = append([]byte(nil), rest...)
			st.pending = nil
		case st.phase == phaseBody || st.phase == phaseChunkData:
			n := min(int64(len(data)), st.bodyLeft)
			if !st.discard {
				emit(stub, data[:n])
			}
			data, st.bodyLeft = data[n:], st.bodyLeft-n
			if st.bodyLeft == 0 {
				if st.phase == phaseBody {
					st.endMessage()
				} else {
					st.phase = phaseChunkSize
				}
			}
		case st.phase == phaseChunkSize || st.phase == phaseTrailers:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				st.line = append(st.line, data...)
				if !st.discard {
					emit(stub, data)
				}
				data = nil
				if len(st.line) > maxHeaderBytes {
					st.role, st.line = rolePassthrough, nil
				}
				continue
			}
			line := bytes.TrimSuffix(append(st.line, data[:i]...), []byte("\r"))
			if !st.discard {
				emit(stub, data[:i+1])
			}
			data, st.line = data[i+1:], nil
			if st.phase == phaseTrailers {
				if len(line) == 0 {
					st.endMessage()
				}
				continue
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(string(line), ";", 2)[0]), 16, 64)
			if err != nil || size < 0 {
				st.role = rolePassthrough
				continue
			}
			if size == 0 {
				st.phase = phaseTrailers
			} else {
				st.phase, st.bodyLeft = phaseChunkData, size+2 // the data and its CRLF
			}
		}
	}
	return true
}

func (st *State) endMessage() {
	st.phase, st.discard, st.chunked, st.bodyLeft = phaseHeaders, false, false, 0
}

var crlfcrlf = []byte("\r\n\r\n")

// message handles one complete header block: it picks the role on the first message, then forwards,
// replaces or delays the message and sets up the framing of its body.
func (t *Toxic) message(stub *toxics.ToxicStub, st *State, head []byte) bool {
	startLine, headers := parseHead(head)
	if st.role == roleUnknown {
		switch {
		case strings.HasPrefix(startLine, "HTTP/1."):
			st.role = roleResponses
		case strings.Contains(startLine, " HTTP/1."):
			st.role = roleRequests
		default:
			st.role = rolePassthrough
			emit(stub, head)
			return true
		}
	}
	length, chunked, untilClose := bodyFraming(st.role, startLine, headers)
	if st.role == roleRequests {
		if t.Rate > 0 && rand.Float64() < t.Rate {
			host := headers["host"]
			if host == "" {
				host = "upstream"
			}
			emit(stub, fmt.Appendf(nil, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Request-Id: %s%d-%016x\r\nContent-Length: 0\r\n\r\n",
				host, MarkerPrefix, t.status(), rand.Uint64()))
			st.discard = true
		} else {
			emit(stub, head)
		}
	} else {
		if status, ok := markedStatus(headers["x-request-id"]); ok {
			body := fmt.Sprintf(`{"error":{"code":"injected_fault","message":"HTTP %d injected by the lab's http_fault toxic"}}`+"\n", status)
			emit(stub, fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s",
				status, statusText(status), len(body), body))
			st.discard = true
		} else {
			if t.HeaderDelay > 0 {
				select {
				case <-time.After(time.Duration(t.HeaderDelay) * time.Millisecond):
				case <-stub.Interrupt:
					// The header block stays pending: the next run sends it (after its own delay).
					return false
				}
			}
			emit(stub, head)
		}
	}
	switch {
	case untilClose:
		st.role, st.discard = rolePassthrough, false
	case chunked:
		st.phase, st.chunked = phaseChunkSize, true
	case length > 0:
		st.phase, st.bodyLeft = phaseBody, length
	default:
		st.endMessage()
	}
	return true
}

// parseHead returns the start line and the headers (lower-cased names, first value wins).
func parseHead(head []byte) (string, map[string]string) {
	lines := strings.Split(strings.TrimSuffix(string(head), "\r\n\r\n"), "\r\n")
	headers := make(map[string]string, len(lines))
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if _, seen := headers[name]; !seen {
			headers[name] = strings.TrimSpace(value)
		}
	}
	return lines[0], headers
}

// bodyFraming tells how the body of a message ends (RFC 9112 §6.3). Responses to HEAD are not
// recognised: the shop's clients do not send HEAD.
func bodyFraming(r role, startLine string, headers map[string]string) (length int64, chunked, untilClose bool) {
	if te := strings.ToLower(headers["transfer-encoding"]); te != "" {
		return 0, strings.HasSuffix(te, "chunked"), !strings.HasSuffix(te, "chunked")
	}
	if cl, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return 0, false, true
		}
		return n, false, false
	}
	if r == roleRequests {
		return 0, false, false
	}
	parts := strings.SplitN(startLine, " ", 3)
	if len(parts) >= 2 {
		if code, err := strconv.Atoi(parts[1]); err == nil && (code < 200 || code == 204 || code == 304) {
			return 0, false, false
		}
	}
	return 0, false, true
}

// markedStatus returns the status a marker request id asks for.
func markedStatus(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, MarkerPrefix)
	if !ok {
		return 0, false
	}
	code, _, _ := strings.Cut(rest, "-")
	n, err := strconv.Atoi(code)
	if err != nil || n < 100 || n > 599 {
		return 0, false
	}
	return n, true
}

func statusText(code int) string {
	switch code {
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 429:
		return "Too Many Requests"
	}
	return "Injected Fault"
}
