package discovery

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-kit/kit/sd/etcdv3"
	kitlog "github.com/go-kit/log"
)

// NewRegistrar returns go-kit's etcd registrar for inst on c. Register at start (it returns at once; the
// Client keeps trying while the registry is down), Deregister before draining on shutdown, so callers
// stop picking the instance before it stops answering.
func NewRegistrar(c *Client, inst Instance, logger *slog.Logger) (*etcdv3.Registrar, error) {
	if err := inst.Validate(); err != nil {
		return nil, err
	}
	return etcdv3.NewRegistrar(c, etcdv3.Service{Key: inst.Key(), Value: inst.URL}, KitLogger(logger)), nil
}

// NewInstancer returns go-kit's etcd instancer of one version of service on c: the set of instance URLs,
// kept current by a watch. When the registry is unreachable it reports an error event and the balancer
// keeps the last set it had. Stop it when done.
func NewInstancer(c *Client, service, version string, logger *slog.Logger) (*etcdv3.Instancer, error) {
	probe := Instance{Service: service, Version: version, ID: "probe", URL: "http://probe:1"}
	if err := probe.Validate(); err != nil {
		return nil, fmt.Errorf("instancer: %w", err)
	}
	return etcdv3.NewInstancer(c, Prefix(service, version), KitLogger(logger))
}

// KitLogger adapts a slog logger to go-kit's log.Logger (what go-kit's sd types log to): key/value pairs
// become attributes, and a line carrying "err" is a warning.
func KitLogger(l *slog.Logger) kitlog.Logger { return kitLogger{l} }

type kitLogger struct{ l *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	level := slog.LevelInfo
	for i := 0; i+1 < len(keyvals); i += 2 {
		if keyvals[i] == "err" {
			level = slog.LevelWarn
			if err, ok := keyvals[i+1].(error); ok {
				keyvals[i+1] = err.Error()
			}
		}
	}
	k.l.Log(context.Background(), level, "discovery", keyvals...)
	return nil
}
