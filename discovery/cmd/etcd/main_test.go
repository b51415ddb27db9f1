package main

import (
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

func defaults() settings {
	return settings{name: "lab-etcd", dataDir: "/data", listenClient: "http://0.0.0.0:2379",
		advertiseClient: "http://etcd:2379", listenPeer: "http://127.0.0.1:2380", compaction: "1h",
		logLevel: "warn", quota: 256 << 20}
}

func TestConfig(t *testing.T) {
	cfg, err := config(defaults())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "lab-etcd" || cfg.Dir != "/data" || cfg.ListenClientUrls[0].Host != "0.0.0.0:2379" ||
		cfg.AdvertiseClientUrls[0].Host != "etcd:2379" || cfg.ListenPeerUrls[0].Host != "127.0.0.1:2380" ||
		cfg.InitialCluster != "lab-etcd=http://127.0.0.1:2380" || cfg.AutoCompactionMode != embed.CompactorModePeriodic ||
		cfg.AutoCompactionRetention != "1h" || cfg.QuotaBackendBytes != 256<<20 || cfg.LogLevel != "warn" {
		t.Errorf("config %+v", cfg)
	}
	two := defaults()
	two.listenClient = "http://0.0.0.0:2379, http://127.0.0.1:12379"
	if cfg, err := config(two); err != nil || len(cfg.ListenClientUrls) != 2 {
		t.Errorf("two client URLs: %v", err)
	}
	for _, c := range []struct {
		name   string
		modify func(*settings)
	}{
		{"empty name", func(s *settings) { s.name = "" }},
		{"empty data dir", func(s *settings) { s.dataDir = "" }},
		{"client without port", func(s *settings) { s.listenClient = "http://0.0.0.0" }},
		{"client not a URL", func(s *settings) { s.listenClient = "0.0.0.0:2379" }},
		{"client https", func(s *settings) { s.listenClient = "https://0.0.0.0:2379" }},
		{"advertise with a path", func(s *settings) { s.advertiseClient = "http://etcd:2379/v3" }},
		{"two peer URLs", func(s *settings) { s.listenPeer = "http://127.0.0.1:2380,http://127.0.0.1:2381" }},
		{"zero quota", func(s *settings) { s.quota = 0 }},
		{"bad compaction", func(s *settings) { s.compaction = "soon" }},
		{"bad log level", func(s *settings) { s.logLevel = "loud" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := defaults()
			c.modify(&s)
			if _, err := config(s); err == nil {
				t.Errorf("%+v accepted", s)
			}
		})
	}
}
