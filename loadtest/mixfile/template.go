package mixfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// template is text with placeholders, compiled once and rendered per request:
//
//	{{seq}}       the request's sequence number (unique within a run)
//	{{uuid}}      a random UUID v4 (an Idempotency-Key, say)
//	{{var NAME}}  a random value of variable NAME (from "vars" or captured from responses)
//
// It is deliberately tiny: text/template would need a clone per request to bind seq, and a load
// generator's templates need nothing more.
type template struct {
	parts []part
	vars  []string // variables it reads
}

type part struct {
	text string // literal text, when fn is nil
	fn   func(r *renderCtx) (string, error)
}

type renderCtx struct {
	seq  uint64
	vars *varPool
}

func compile(s string) (*template, error) {
	t := &template{}
	for len(s) > 0 {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.parts = append(t.parts, part{text: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{text: s[:i]})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		fields := strings.Fields(s[i+2 : i+j])
		p, err := placeholder(fields)
		if err != nil {
			return nil, fmt.Errorf("%s in %q", err, s)
		}
		if len(fields) == 2 {
			t.vars = append(t.vars, fields[1])
		}
		t.parts = append(t.parts, p)
		s = s[i+j+2:]
	}
	return t, nil
}

func placeholder(f []string) (part, error) {
	switch {
	case len(f) == 1 && f[0] == "seq":
		return part{fn: func(r *renderCtx) (string, error) { return strconv.FormatUint(r.seq, 10), nil }}, nil
	case len(f) == 1 && f[0] == "uuid":
		return part{fn: func(*renderCtx) (string, error) { return newUUID(), nil }}, nil
	case len(f) == 2 && f[0] == "var" && validName(f[1]):
		name := f[1]
		return part{fn: func(r *renderCtx) (string, error) { return r.vars.pick(name) }}, nil
	default:
		return part{}, fmt.Errorf("unknown placeholder {{%s}} (want {{seq}}, {{uuid}} or {{var NAME}})", strings.Join(f, " "))
	}
}

// constant reports whether the template has no placeholders, and its text.
func (t *template) constant() (string, bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.fn != nil {
			return "", false
		}
		b.WriteString(p.text)
	}
	return b.String(), true
}

func (t *template) render(r *renderCtx) (string, error) {
	if len(t.parts) == 1 && t.parts[0].fn == nil {
		return t.parts[0].text, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.fn == nil {
			b.WriteString(p.text)
			continue
		}
		s, err := p.fn(r)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics rather than return an error)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
