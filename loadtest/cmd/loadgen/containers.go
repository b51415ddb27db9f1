package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/moby/moby/client"

	"github.com/resilience-lab/lab/loadtest"
)

const (
	// composeProject is the project name `make stack-up` gives the compose stack (docker-compose -p reslab).
	composeProject = "reslab"
	// Labels docker compose puts on every container it creates.
	composeProjectLabel = "com.docker.compose.project"
	composeServiceLabel = "com.docker.compose.service"
	// stopGrace is how long a stopped service gets between SIGTERM and SIGKILL, as in the lab's stack.
	stopGrace = 2
)

// composeContainers implements fault.Containers for the services of a docker compose project, through
// the Docker engine's API. It finds a service's containers by the compose labels at every call, so it
// never acts on a container of another project, nor on one that compose has since replaced.
type composeContainers struct {
	docker  *client.Client
	project string
}

// dialDocker connects to the Docker engine named by DOCKER_HOST (else the default socket) and checks
// that it answers. A TCP engine that is not on this machine is refused unless allowRemote.
func dialDocker(ctx context.Context, getenv func(string) string, allowRemote bool) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv}
	if h := getenv("DOCKER_HOST"); h != "" {
		u, err := url.Parse(h)
		if err != nil {
			return nil, fmt.Errorf("DOCKER_HOST %q: %w", h, err)
		}
		if u.Scheme == "tcp" && !allowRemote && !loadtest.IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("DOCKER_HOST %q is not a loopback address; pass --allow-remote to use it", h)
		}
		opts = append(opts, client.WithHost(h))
	}
	docker, err := client.New(opts...)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		docker.Close()
		return nil, fmt.Errorf("the Docker engine does not answer: %w", err)
	}
	return docker, nil
}

// containerIDs returns the ids of service's containers in the project, stopped ones included (a killed
// service must be found to be started again).
func (c *composeContainers) containerIDs(ctx context.Context, service string) ([]string, error) {
	list, err := c.docker.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: client.Filters{}.Add("label",
			composeProjectLabel+"="+c.project, composeServiceLabel+"="+service),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the containers of %s: %w", service, err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no container of service %q in compose project %q (is the stack up? make stack-up)", service, c.project)
	}
	ids := make([]string, len(list.Items))
	for i, it := range list.Items {
		ids[i] = it.ID
	}
	return ids, nil
}

// each applies do to every container of service.
func (c *composeContainers) each(ctx context.Context, service, what string, do func(id string) error) error {
	ids, err := c.containerIDs(ctx, service)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := do(id); err != nil {
			errs = append(errs, fmt.Errorf("%s %s (container %.12s): %w", what, service, id, err))
		}
	}
	return errors.Join(errs...)
}

func (c *composeContainers) StopService(ctx context.Context, service string) error {
	return c.each(ctx, service, "stop", func(id string) error {
		grace := stopGrace
		_, err := c.docker.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &grace})
		return err
	})
}

func (c *composeContainers) KillService(ctx context.Context, service string) error {
	return c.each(ctx, service, "kill", func(id string) error {
		_, err := c.docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"})
		return err
	})
}

func (c *composeContainers) StartService(ctx context.Context, service string) error {
	return c.each(ctx, service, "start", func(id string) error {
		_, err := c.docker.ContainerStart(ctx, id, client.ContainerStartOptions{})
		return err
	})
}

func (c *composeContainers) PauseService(ctx context.Context, service string) error {
	return c.each(ctx, service, "pause", func(id string) error {
		_, err := c.docker.ContainerPause(ctx, id, client.ContainerPauseOptions{})
		return err
	})
}

func (c *composeContainers) UnpauseService(ctx context.Context, service string) error {
	return c.each(ctx, service, "unpause", func(id string) error {
		_, err := c.docker.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		return err
	})
}

func (c *composeContainers) RestartService(ctx context.Context, service string) error {
	return c.each(ctx, service, "restart", func(id string) error {
		grace := stopGrace
		_, err := c.docker.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &grace})
		return err
	})
}
