package main

import (
	"testing"
)

func TestOptions(t *testing.T) {
	opts, err := options("0.0.0.0:4222", "127.0.0.1:8222", "/data", "lab-nats", 1<<30, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Host != "0.0.0.0" || opts.Port != 4222 || opts.HTTPHost != "127.0.0.1" || opts.HTTPPort != 8222 ||
		!opts.JetStream || opts.StoreDir != "/data" || opts.ServerName != "lab-nats" || opts.JetStreamMaxStore != 1<<30 {
		t.Errorf("options %+v", opts)
	}
	if opts, err := options("0.0.0.0:4222", "", "/data", "n", 1, 1); err != nil || opts.HTTPPort != 0 {
		t.Errorf("without monitoring: %+v, %v", opts, err)
	}
	for _, c := range []struct {
		name, listen, http, store string
		maxStore, maxMem          int64
	}{
		{"listen without port", "0.0.0.0", "", "/data", 1, 1},
		{"listen port not a number", "0.0.0.0:nats", "", "/data", 1, 1},
		{"listen port out of range", "0.0.0.0:70000", "", "/data", 1, 1},
		{"bad monitoring address", "0.0.0.0:4222", "8222", "/data", 1, 1},
		{"empty store", "0.0.0.0:4222", "", "", 1, 1},
		{"zero store limit", "0.0.0.0:4222", "", "/data", 0, 1},
		{"negative memory limit", "0.0.0.0:4222", "", "/data", 1, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := options(c.listen, c.http, c.store, "n", c.maxStore, c.maxMem); err == nil {
				t.Errorf("options(%q, %q, %q, %d, %d) accepted", c.listen, c.http, c.store, c.maxStore, c.maxMem)
			}
		})
	}
}
