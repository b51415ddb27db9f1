package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Env reads configuration from environment variables with defaults and collects every bad value, so a
// service reports all of its configuration mistakes at once and exits non-zero instead of running with a
// guess.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// NewEnv reads the process environment.
func NewEnv() *Env { return &Env{lookup: os.LookupEnv} }

// EnvFrom reads from a map (tests).
func EnvFrom(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) String(key, def string) string {
	if v, ok := e.lookup(key); ok && v != "" {
		return v
	}
	return def
}

func (e *Env) Int(key string, def int) int {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want an integer", key, v))
		return def
	}
	return n
}

func (e *Env) Float(key string, def float64) float64 {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a number", key, v))
		return def
	}
	return f
}

func (e *Env) Duration(key string, def time.Duration) time.Duration {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a non-negative duration such as 250ms or 2s", key, v))
		return def
	}
	return d
}

func (e *Env) Bool(key string, def bool) bool {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", key, v))
		return def
	}
	return b
}

// Required returns the value of key or records an error when it is unset.
func (e *Env) Required(key string) string {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		e.errs = append(e.errs, fmt.Errorf("%s is required", key))
	}
	return v
}

// Fail records a validation error found by the caller.
func (e *Env) Fail(format string, args ...any) { e.errs = append(e.errs, fmt.Errorf(format, args...)) }

// Err joins every bad value seen so far.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// LogLevel reads a slog level (debug, info, warn, error).
func (e *Env) LogLevel(key string, def slog.Level) slog.Level {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want debug, info, warn or error", key, v))
		return def
	}
	return l
}
