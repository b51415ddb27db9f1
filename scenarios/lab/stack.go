package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/services/platform"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	// ManagedLabel marks every container, network and image the lab creates (`make clean` removes them).
	ManagedLabel = "org.resilience-lab.managed"
	// ownerLabel holds the pid of the process that owns a stack, so a later run can remove the
	// containers of a run that died without cleaning up (Ryuk is off) and leave live ones alone.
	ownerLabel   = "org.resilience-lab.owner-pid"
	serviceLabel = "org.resilience-lab.service"

	toxiproxyAPIPort = 8474
	// JWTSecret signs the gateway's dev tokens inside the lab.
	JWTSecret = "resilience-lab-scenarios-secret-0123456789abcdef"
	// ServiceSecret signs the service-to-service tokens inside the lab (SERVICE_TOKEN_SECRET).
	ServiceSecret = "resilience-lab-scenarios-service-secret-0123456789"
)

// Link is one caller→callee arrow of the shop, routed through its own Toxiproxy proxy.
type Link struct {
	Name   string // caller-callee: the proxy's name, the metric label, the policy env prefix
	Caller string
	Callee string
	Port   int // the proxy's listen port inside the Toxiproxy container
}

// Links are every HTTP link between the shop's services (the resilience policies' links).
var Links = []Link{
	{"gateway-catalog", "gateway", "catalog", 20001},
	{"gateway-orders", "gateway", "orders", 20002},
	{"gateway-payments", "gateway", "payments", 20003},
	{"orders-catalog", "orders", "catalog", 20004},
	{"orders-payments", "orders", "payments", 20005},
}

// BrokerLinks are each event producer's and consumer's link to the NATS broker (its NATS_URL).
var BrokerLinks = []Link{
	{"orders-nats", "orders", Broker, 20006},
	{"catalog-nats", "catalog", Broker, 20007},
	{"payments-nats", "payments", Broker, 20008},
	{"notifications-nats", "notifications", Broker, 20009},
}

// AllLinks are Links and BrokerLinks: every proxy of the lab's Toxiproxy.
func AllLinks() []Link { return slices.Concat(Links, BrokerLinks) }

// LinkByName returns the link (HTTP or broker) called name.
func LinkByName(name string) (Link, bool) {
	for _, l := range AllLinks() {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// Broker is the NATS JetStream server's container and network alias.
const Broker = "nats"

// brokerMonitorPort serves the broker's /healthz and /jsz.
const brokerMonitorPort = 8222

// Services are the shop's services in start order (callees before callers).
var Services = []string{"catalog", "payments", "notifications", "orders", "gateway"}

// ServicePorts are the ports the services (and the broker's clients) listen on inside their containers.
var ServicePorts = map[string]int{"gateway": 8080, "catalog": 8081, "orders": 8082, "payments": 8083,
	"notifications": 8084, Broker: 4222}

// ErrNoDocker is returned by Start when no Docker engine answers.
var ErrNoDocker = errors.New("no Docker engine answers")

// Config configures a stack.
type Config struct {
	// Progress receives one line per step while the stack starts and changes; nil discards them.
	Progress io.Writer
	// Env adds or overrides environment variables per service ("orders" → ORDERS_PAYMENTS_BREAKER=…).
	Env map[string]map[string]string
	// ContainerLogs, when set, receives testcontainers' own log lines (image checks, waits).
	ContainerLogs io.Writer
	// Replicas starts the replicated topology (ReplicaInstances) instead of one container per service:
	// the registry (etcd), catalog and payments twice each, every instance registered and discovered
	// through the registry, and every replica behind its own proxy per link. Env may then also be keyed
	// by an instance's name ("catalog-2"), over its service's; an optional instance runs only when Env
	// names it.
	Replicas bool
}

// Instance is one container of a service.
type Instance struct {
	Name    string // the container's name and network alias: catalog-2
	Service string // the service it is an instance of: catalog
	Version string // the version it registers as (v1 unless a canary)
	// Optional instances run only when a scenario's Env names them: a spare replica, a canary.
	Optional bool
}

// ReplicaInstances are the service instances of the replicated topology, in start order (callees
// before callers). catalog-3 is a spare replica (a scenario starts it: StandbyEnv) and catalog-v2 a
// canary of catalog's next version. Replicas of one service share its database on one volume, as
// stateless instances of one service do in production.
var ReplicaInstances = []Instance{
	{"catalog-1", "catalog", "v1", false}, {"catalog-2", "catalog", "v1", false},
	{"catalog-3", "catalog", "v1", true}, {"catalog-v2", "catalog", "v2", true},
	{"payments-1", "payments", "v1", false}, {"payments-2", "payments", "v1", false},
	{"notifications", "notifications", "v1", false}, {"orders", "orders", "v1", false}, {"gateway", "gateway", "v1", false},
}

// serviceOf is the service of a replicated topology's instance (catalog-2 → catalog), else name.
func serviceOf(name string) string {
	for _, inst := range ReplicaInstances {
		if inst.Name == name {
			return inst.Service
		}
	}
	return name
}

// singleInstances are the default topology's instances: one per service, named after it.
func singleInstances() []Instance {
	out := make([]Instance, len(Services))
	for i, svc := range Services {
		out[i] = Instance{Name: svc, Service: svc, Version: "v1"}
	}
	return out
}

// StandbyEnv, set to "true" in an optional instance's Env, creates its container without starting it:
// a fault.Container{Action: fault.Start} starts it during a run (Reset stops it again).
const StandbyEnv = "LAB_STANDBY"

// Registry is the etcd container of the replicated topology; services reach its client port through
// the Toxiproxy proxy RegistryLink, so "registry down" is a proxy going down (fault.LinkDown).
const (
	Registry            = "registry"
	RegistryLink        = "registry"
	registryPort        = 2379
	registryProxyPort   = 20010
	instanceProxyPorts0 = 20100
)

// InstanceLink is the name of the proxy of link (caller-service) to one instance of its callee: the
// caller and the instance's name (gateway-catalog-2, orders-payments-1).
func InstanceLink(link, instance string) string {
	l, ok := LinkByName(link)
	if !ok {
		return link + "@" + instance
	}
	return l.Caller + "-" + instance
}

// ReplicatedServices are the services with more than one instance in the replicated topology.
var ReplicatedServices = []string{"catalog", "payments"}

// instanceLinks are the replicated topology's per-instance proxies: one per link and instance of a
// replicated callee, listening from instanceProxyPorts0 up.
func instanceLinks() []Link {
	var out []Link
	port := instanceProxyPorts0
	for _, l := range Links {
		if !slices.Contains(ReplicatedServices, l.Callee) {
			continue
		}
		for _, inst := range ReplicaInstances {
			if inst.Service == l.Callee {
				out = append(out, Link{Name: InstanceLink(l.Name, inst.Name), Caller: l.Caller, Callee: inst.Name, Port: port})
				port++
			}
		}
	}
	return out
}

// Stack is the running shop: four services and a Toxiproxy on a private Docker network. Only the
// gateway and the Toxiproxy API are published, on 127.0.0.1. It is safe for concurrent use.
type Stack struct {
	id       string
	root     string
	provider *testcontainers.DockerProvider
	docker   client.APIClient
	network  *testcontainers.DockerNetwork
	images   map[string]string
	progress io.Writer
	tclogger tclog.Logger

	replicas  bool
	instances []Instance // every service container this topology may run, in start order
	volumes   []string   // the shared database volumes of replicated services

	mu         sync.Mutex
	containers map[string]*testcontainers.DockerContainer
	env        map[string]map[string]string // the extra env each instance runs with (nil: not created)
	gatewayURL string

	// ToxiproxyURL is the Toxiproxy API on 127.0.0.1.
	ToxiproxyURL string
	// Toxiproxy is a client of that API.
	Toxiproxy *toxiclient.Client

	stopSignals chan os.Signal
	closeOnce   sync.Once
	closeErr    error
}

// Start builds what changed, starts the shop and returns it once every service is ready. On failure
// everything it started is removed again. The caller must Close the stack; Start also closes it on
// SIGINT/SIGTERM, since nothing else would (Ryuk is off).
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	logsTo := cfg.ContainerLogs
	if logsTo == nil {
		logsTo = io.Discard
	}
	ensureTestcontainersEnv()
	begin := time.Now()
	provider, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(writerLogger{logsTo}))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	if err := provider.Health(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	s := &Stack{
		id:         strconv.FormatInt(time.Now().UnixMilli()%1_000_000, 36) + strconv.Itoa(os.Getpid()%1000),
		root:       root,
		provider:   provider,
		docker:     provider.Client(),
		images:     map[string]string{},
		progress:   progress,
		tclogger:   writerLogger{logsTo},
		containers: map[string]*testcontainers.DockerContainer{},
		env:        map[string]map[string]string{},
		replicas:   cfg.Replicas,
		instances:  singleInstances(),
	}
	if cfg.Replicas {
		s.instances = ReplicaInstances
	}
	for _, inst := range s.instances {
		if e, ok := extraEnv(cfg.Env, inst); ok {
			s.env[inst.Name] = e
		}
	}
	s.sweepOrphans(ctx)
	s.stopSignals = make(chan os.Signal, 1)
	signal.Notify(s.stopSignals, os.Interrupt, syscall.SIGTERM)
	go s.closeOnSignal()
	defer func() {
		if err != nil {
			_ = s.Close(context.WithoutCancel(ctx))
		}
	}()

	names := slices.Concat(Services, []string{brokerBinary, "toxiproxy"})
	if cfg.Replicas {
		names = append(names, registryBinary)
	}
	if err := BuildBinaries(ctx, root, names, progress); err != nil {
		return nil, err
	}
	for _, n := range names {
		tag, err := BuildImage(ctx, provider, root, n, progress)
		if err != nil {
			return nil, err
		}
		s.images[n] = tag
	}
	s.network, err = tcnetwork.New(ctx, tcnetwork.WithLabels(s.labels("")))
	if err != nil {
		return nil, fmt.Errorf("lab: create network: %w", err)
	}
	fmt.Fprintf(progress, "lab: network %s\n", s.network.Name)
	// Toxiproxy, the broker and the registry need nothing; then callees before callers, each batch in
	// parallel.
	infra := []func(context.Context) error{s.startToxiproxy, s.startBroker}
	if cfg.Replicas {
		if err := s.createVolumes(ctx); err != nil {
			return nil, err
		}
		infra = append(infra, s.startRegistry)
	}
	if err := parallel(infra...)(ctx); err != nil {
		return nil, err
	}
	for _, batch := range [][]string{{"catalog", "payments", "notifications"}, {"orders"}, {"gateway"}} {
		var starts []func(context.Context) error
		for _, inst := range s.instances {
			if !slices.Contains(batch, inst.Service) || !s.wanted(inst) {
				continue
			}
			starts = append(starts, func(ctx context.Context) error { return s.startInstance(ctx, inst) })
		}
		if err := parallel(starts...)(ctx); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "lab: stack ready in %.1fs: gateway %s, toxiproxy %s\n",
		time.Since(begin).Seconds(), s.GatewayURL(), s.ToxiproxyURL)
	return s, nil
}

// parallel returns a step that runs steps concurrently and joins their errors.
func parallel(steps ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(steps))
		var wg sync.WaitGroup
		for i, step := range steps {
			wg.Go(func() { errs[i] = step(ctx) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// ensureTestcontainersEnv sets what testcontainers needs on this kind of machine when the caller (the
// Makefile) has not: the host override (it would otherwise dial the default gateway) and no Ryuk
// (its image cannot be pulled; the harness removes everything itself).
func ensureTestcontainersEnv() {
	for k, v := range map[string]string{"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1", "TESTCONTAINERS_RYUK_DISABLED": "true"} {
		if os.Getenv(k) == "" {
			_ = os.Setenv(k, v)
		}
	}
}

// GatewayURL is the gateway's base URL on 127.0.0.1 (it changes when the gateway is recreated).
func (s *Stack) GatewayURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gatewayURL
}

// ServiceToken mints the service token caller would send to callee, for the harness's reads of a
// service's API through the observation relay (which forwards Authorization).
func (s *Stack) ServiceToken(caller, callee string) (string, error) {
	return platform.ServiceAuth{Secret: []byte(ServiceSecret)}.TokenSource(caller, callee).Token()
}

// ObserveURL is where the harness reads path (metrics, debug/resilience, readyz) of service: through
// the Toxiproxy container's relay, which dials the service directly, past every fault.
func (s *Stack) ObserveURL(service, path string) string {
	return s.ToxiproxyURL + "/observe/" + service + "/" + path
}

func (s *Stack) labels(service string) map[string]string {
	l := map[string]string{ManagedLabel: "true", ownerLabel: strconv.Itoa(os.Getpid())}
	if service != "" {
		l[serviceLabel] = service
	}
	return l
}

// baseRequest is every lab container's shape, as in the compose stack (docs/security.md): a read-only
// root filesystem, a tmpfs on /tmp, and /data (the databases, the broker's store) on an anonymous
// volume, which survives a stop and start of the container and goes when it is removed.
func (s *Stack) baseRequest(name string) testcontainers.ContainerRequest {
	return testcontainers.ContainerRequest{
		Image:              s.images[name],
		Name:               "reslab-" + s.id + "-" + name,
		Labels:             s.labels(name),
		Networks:           []string{s.network.Name},
		NetworkAliases:     map[string][]string{s.network.Name: {name}},
		Tmpfs:              map[string]string{"/tmp": "rw"},
		HostConfigModifier: hardened,
	}
}

// hardened makes the root filesystem read-only and mounts /data on an anonymous volume.
func hardened(hc *container.HostConfig) {
	hc.ReadonlyRootfs = true
	hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Target: "/data"})
}

// hardenedOn is hardened with /data on the named volume (the database the replicas of a service share).
func hardenedOn(volume string) func(*container.HostConfig) {
	return func(hc *container.HostConfig) {
		hc.ReadonlyRootfs = true
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: volume, Target: "/data"})
	}
}

func (s *Stack) volumeName(service string) string { return "reslab-" + s.id + "-" + service + "-data" }

// createVolumes creates the shared database volume of each replicated service. SQLite's locks (and
// its WAL's shared memory) work across the containers of one host sharing a volume: the replicas'
// migrations and writes queue behind BEGIN IMMEDIATE and busy_timeout as two processes' would.
func (s *Stack) createVolumes(ctx context.Context) error {
	for _, svc := range ReplicatedServices {
		name := s.volumeName(svc)
		if _, err := s.docker.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Labels: s.labels(svc)}); err != nil {
			return fmt.Errorf("lab: create volume %s: %w", name, err)
		}
		s.volumes = append(s.volumes, name)
	}
	return nil
}

// registryBinary is the registry's program (discovery/cmd/etcd) and image.
const registryBinary = "etcd"

// startRegistry starts etcd. Its data lives on the container's /data volume, so a stopped and
// restarted registry keeps its keys and leases (etcd renews every lease when it comes back).
func (s *Stack) startRegistry(ctx context.Context) error {
	req := s.baseRequest(Registry)
	req.Image = s.images[registryBinary]
	req.Env = map[string]string{"ETCD_DATA_DIR": "/data/etcd", "ETCD_ADVERTISE_CLIENT_URLS": fmt.Sprintf("http://%s:%d", Registry, registryPort),
		"ETCD_AUTO_COMPACTION_RETENTION": "10m"}
	req.WaitingFor = wait.ForExec([]string{"/app", "healthcheck", fmt.Sprintf("http://127.0.0.1:%d/health", registryPort)}).
		WithPollInterval(200 * time.Millisecond).WithStartupTimeout(90 * time.Second)
	_, err := s.run(ctx, Registry, req)
	return err
}

// extraEnv is what env gives inst: its service's variables, then its own (keyed by its name), and
// whether the instance is to run at all (an optional one only when env names it).
func extraEnv(env map[string]map[string]string, inst Instance) (map[string]string, bool) {
	own, named := env[inst.Name]
	if inst.Optional && !named {
		return nil, false
	}
	out := maps.Clone(env[inst.Service])
	if inst.Name != inst.Service {
		if out == nil && own != nil {
			out = map[string]string{}
		}
		maps.Copy(out, own)
	}
	return out, true
}

// wanted reports whether inst is to run in the current configuration.
func (s *Stack) wanted(inst Instance) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.env[inst.Name]
	return ok || !inst.Optional
}

// standby reports whether inst is configured on standby (created, started by a fault).
func (s *Stack) standby(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env[name][StandbyEnv] == "true"
}

// publishOnLoopback hardens the container and publishes port on a free port of 127.0.0.1 only. The host
// port is picked here, below the kernel's ephemeral range: a port Docker picked itself from that range
// may be the local end of some outgoing connection by the time its proxy binds it (run retries when that
// happens anyway).
func publishOnLoopback(port int) func(*container.HostConfig) {
	return func(hc *container.HostConfig) {
		hardened(hc)
		p := network.MustParsePort(strconv.Itoa(port) + "/tcp")
		hc.PortBindings = network.PortMap{p: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(freeLoopbackPort())}}}
	}
}

// freeLoopbackPort returns a port of 127.0.0.1 in [20000, 32000) that nothing listens on now, or 0 (let
// Docker pick) when none of a few tries is free.
func freeLoopbackPort() int {
	for range 50 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port
		}
	}
	return 0
}

func (s *Stack) startToxiproxy(ctx context.Context) error {
	req := s.baseRequest("toxiproxy")
	observe := fmt.Sprintf("%s=http://%s:%d", Broker, Broker, brokerMonitorPort)
	for _, inst := range s.instances {
		observe += fmt.Sprintf(",%s=http://%s:%d", inst.Name, inst.Name, ServicePorts[inst.Service])
	}
	if s.replicas {
		// A replicated service is observed at its first replica (they share one database, so the
		// outbox backlog the reports read is the same), each replica also under its own name.
		for _, svc := range ReplicatedServices {
			observe += fmt.Sprintf(",%s=http://%s-1:%d", svc, svc, ServicePorts[svc])
		}
		observe += fmt.Sprintf(",%s=http://%s:%d", Registry, Registry, registryPort)
	}
	req.Env = map[string]string{"LAB_OBSERVE": observe, "LOG_LEVEL": "warn"}
	req.ExposedPorts = []string{fmt.Sprintf("%d/tcp", toxiproxyAPIPort)}
	req.HostConfigModifier = publishOnLoopback(toxiproxyAPIPort)
	req.WaitingFor = wait.ForHTTP("/version").WithPort(fmt.Sprintf("%d/tcp", toxiproxyAPIPort)).
		WithPollInterval(200 * time.Millisecond).WithStartupTimeout(60 * time.Second)
	c, err := s.run(ctx, "toxiproxy", req)
	if err != nil {
		return err
	}
	port, err := c.MappedPort(ctx, fmt.Sprintf("%d/tcp", toxiproxyAPIPort))
	if err != nil {
		return fmt.Errorf("lab: toxiproxy port: %w", err)
	}
	s.ToxiproxyURL = fmt.Sprintf("http://127.0.0.1:%d", port.Num())
	s.Toxiproxy = toxiclient.NewClient(s.ToxiproxyURL)
	proxies := make([]toxiclient.Proxy, 0, len(Links)+len(BrokerLinks))
	for _, l := range AllLinks() {
		proxies = append(proxies, toxiclient.Proxy{
			Name: l.Name, Listen: fmt.Sprintf("0.0.0.0:%d", l.Port),
			Upstream: fmt.Sprintf("%s:%d", l.Callee, ServicePorts[l.Callee]), Enabled: true,
		})
	}
	if s.replicas {
		for _, l := range instanceLinks() {
			svc := serviceOf(l.Callee)
			proxies = append(proxies, toxiclient.Proxy{
				Name: l.Name, Listen: fmt.Sprintf("0.0.0.0:%d", l.Port),
				Upstream: fmt.Sprintf("%s:%d", l.Callee, ServicePorts[svc]), Enabled: true,
			})
		}
		proxies = append(proxies, toxiclient.Proxy{Name: RegistryLink, Listen: fmt.Sprintf("0.0.0.0:%d", registryProxyPort),
			Upstream: fmt.Sprintf("%s:%d", Registry, registryPort), Enabled: true})
	}
	if _, err := s.Toxiproxy.Populate(proxies); err != nil {
		return fmt.Errorf("lab: create proxies: %w", err)
	}
	fmt.Fprintf(s.progress, "lab: toxiproxy up with %d proxies\n", len(proxies))
	return nil
}

// brokerBinary is the broker's program (events/cmd/nats-server) and image.
const brokerBinary = "nats-server"

// startBroker starts NATS with JetStream. Its store lives on the container's /data volume, so a
// stopped and restarted broker keeps its streams.
func (s *Stack) startBroker(ctx context.Context) error {
	req := s.baseRequest(Broker)
	req.Image = s.images[brokerBinary]
	req.Env = map[string]string{"NATS_STORE_DIR": "/data", "NATS_MAX_MEMORY_BYTES": strconv.Itoa(64 << 20)}
	req.WaitingFor = wait.ForExec([]string{"/app", "healthcheck", s.brokerHealthURL("127.0.0.1")}).
		WithPollInterval(100 * time.Millisecond).WithStartupTimeout(60 * time.Second)
	_, err := s.run(ctx, Broker, req)
	return err
}

func (s *Stack) brokerHealthURL(host string) string {
	return fmt.Sprintf("http://%s:%d/healthz?js-enabled-only=true", host, brokerMonitorPort)
}

// serviceEnv is the environment of instance inst: its address and database, its downstream URLs through
// the proxies of its links, its registration and discovery in the replicated topology, then the
// configured extras.
func (s *Stack) serviceEnv(inst Instance) map[string]string {
	svc := inst.Service
	up := map[string]string{"catalog": "CATALOG_URL", "orders": "ORDERS_URL", "payments": "PAYMENTS_URL"}
	env := map[string]string{
		"LOG_LEVEL":              "warn",
		"SHUTDOWN_TIMEOUT":       "2s",
		upperName(svc) + "_ADDR": fmt.Sprintf(":%d", ServicePorts[svc]),
	}
	// Every call between the services carries a service token signed with the lab's key (docs/security.md).
	env["SERVICE_TOKEN_SECRET"] = ServiceSecret
	// Spans go to the trace store of the lab's Toxiproxy container (past every fault), which the reports
	// read to break the slowest request of a second down by hop. Only traces the load driver started
	// (a sampled traceparent) are recorded: the services start none of their own.
	env["OTEL_TRACES_EXPORTER"] = "otlp"
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = fmt.Sprintf("http://toxiproxy:%d", toxiproxyAPIPort)
	env["OTEL_TRACES_SAMPLER_ARG"] = "0"
	switch svc {
	case "gateway":
		env["GATEWAY_JWT_SECRET"] = JWTSecret
		env["GATEWAY_DEV_TOKENS"] = "true"
	default:
		env[upperName(svc)+"_DB"] = "/data/" + svc + ".db"
		// Sized for short runs: a relay or consumer that backed off while the broker was away tries
		// again within a second of its return, and a delivery lost with a broker connection (fetched,
		// never acked) comes again after 3 s instead of 30 s.
		env["EVENTS_MAX_BACKOFF"] = "1s"
		env["EVENTS_ACK_WAIT"] = "3s"
	}
	if svc == "orders" {
		// Sagas a fault left half-done resume within a second or two of the fault, so a short run
		// settles quickly.
		env["ORDERS_RESUME_INTERVAL"] = "1s"
		env["ORDERS_RESUME_GRACE"] = "1s"
	}
	for _, l := range Links {
		if l.Caller == svc {
			env[up[l.Callee]] = fmt.Sprintf("http://toxiproxy:%d", l.Port)
		}
	}
	for _, l := range BrokerLinks {
		if l.Caller == svc {
			env["NATS_URL"] = fmt.Sprintf("nats://toxiproxy:%d", l.Port)
		}
	}
	if s.replicas {
		s.discoveryEnv(inst, env)
	}
	s.mu.Lock()
	maps.Copy(env, s.env[inst.Name])
	s.mu.Unlock()
	delete(env, StandbyEnv)
	return env
}

// discoveryEnv adds the replicated topology's registry settings to env: every instance registers the
// URL of its own container, and every caller dials each instance it discovers through that instance's
// proxy on the link (<LINK>_INSTANCE_PROXIES), so one replica can be degraded alone.
func (s *Stack) discoveryEnv(inst Instance, env map[string]string) {
	env["REGISTRY_ENDPOINTS"] = fmt.Sprintf("http://toxiproxy:%d", registryProxyPort)
	if inst.Service != "gateway" && inst.Service != "notifications" {
		env["SERVICE_ADVERTISE_URL"] = fmt.Sprintf("http://%s:%d", inst.Name, ServicePorts[inst.Service])
		env["SERVICE_INSTANCE_ID"] = inst.Name
		env["SERVICE_VERSION"] = inst.Version
	}
	byLink := map[string][]string{}
	for _, l := range instanceLinks() {
		if l.Caller != inst.Service {
			continue
		}
		svc := serviceOf(l.Callee)
		link := l.Caller + "-" + svc
		byLink[link] = append(byLink[link], fmt.Sprintf("http://%s:%d=http://toxiproxy:%d", l.Callee, ServicePorts[svc], l.Port))
	}
	for _, l := range Links {
		if l.Caller == inst.Service && !slices.Contains(ReplicatedServices, l.Callee) {
			// orders has one instance: it registers under its own name and is dialled through the link's proxy.
			byLink[l.Name] = append(byLink[l.Name], fmt.Sprintf("http://%s:%d=http://toxiproxy:%d", l.Callee, ServicePorts[l.Callee], l.Port))
		}
	}
	for link, pairs := range byLink {
		env[strings.ToUpper(strings.ReplaceAll(link, "-", "_"))+"_INSTANCE_PROXIES"] = strings.Join(pairs, ",")
	}
}

func upperName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// startInstance creates inst's container and, unless it is on standby, starts it and waits until it is
// ready.
func (s *Stack) startInstance(ctx context.Context, inst Instance) error {
	svc := inst.Service
	req := s.baseRequest(inst.Name)
	req.Image = s.images[svc]
	req.Env = s.serviceEnv(inst)
	port := ServicePorts[svc]
	if slices.Contains(ReplicatedServices, svc) && s.replicas {
		req.HostConfigModifier = hardenedOn(s.volumeName(svc))
		if !inst.Optional {
			// The service's name reaches every regular replica: the static URL the callers fall back to.
			req.NetworkAliases[s.network.Name] = append(req.NetworkAliases[s.network.Name], svc)
		}
	}
	if svc == "gateway" {
		req.ExposedPorts = []string{fmt.Sprintf("%d/tcp", port)}
		req.HostConfigModifier = publishOnLoopback(port)
	}
	s.mu.Lock()
	standby := s.env[inst.Name][StandbyEnv] == "true"
	s.mu.Unlock()
	if standby {
		_, err := s.create(ctx, inst.Name, req)
		return err
	}
	// The images have no shell: the service's own binary probes its readiness from inside.
	req.WaitingFor = wait.ForExec([]string{"/app", "healthcheck", fmt.Sprintf("http://127.0.0.1:%d/readyz", port)}).
		WithPollInterval(250 * time.Millisecond).WithStartupTimeout(90 * time.Second)
	c, err := s.run(ctx, inst.Name, req)
	if err != nil {
		return err
	}
	if svc == "gateway" {
		p, err := c.MappedPort(ctx, fmt.Sprintf("%d/tcp", port))
		if err != nil {
			return fmt.Errorf("lab: gateway port: %w", err)
		}
		s.mu.Lock()
		s.gatewayURL = fmt.Sprintf("http://127.0.0.1:%d", p.Num())
		s.mu.Unlock()
	}
	return nil
}

// create creates a container without starting it (a standby instance).
func (s *Stack) create(ctx context.Context, name string, req testcontainers.ContainerRequest) (*testcontainers.DockerContainer, error) {
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Logger: s.tclogger})
	dc, _ := c.(*testcontainers.DockerContainer)
	if dc != nil {
		s.mu.Lock()
		s.containers[name] = dc
		s.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("lab: create %s: %w", name, err)
	}
	fmt.Fprintf(s.progress, "lab: %-9s created, on standby\n", name)
	return dc, nil
}

func (s *Stack) run(ctx context.Context, name string, req testcontainers.ContainerRequest) (*testcontainers.DockerContainer, error) {
	begin := time.Now()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req, Started: true, Logger: s.tclogger,
	})
	// Docker picks a published port that another process may take before its proxy binds it: try
	// again with a fresh container.
	for attempt := 1; err != nil && attempt < 4 && strings.Contains(err.Error(), "address already in use"); attempt++ {
		fmt.Fprintf(s.progress, "lab: %s: published port taken (%v), starting it again\n", name, err)
		if c != nil {
			_ = c.Terminate(ctx)
		}
		c, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
			ContainerRequest: req, Started: true, Logger: s.tclogger,
		})
	}
	if dc, ok := c.(*testcontainers.DockerContainer); ok && dc != nil {
		s.mu.Lock()
		s.containers[name] = dc
		s.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("lab: start %s: %w%s", name, err, s.logTail(ctx, name))
	}
	fmt.Fprintf(s.progress, "lab: %-9s ready in %.1fs\n", name, time.Since(begin).Seconds())
	return c.(*testcontainers.DockerContainer), nil
}

// logTail returns the last lines a container logged, to explain why it did not become ready.
func (s *Stack) logTail(ctx context.Context, name string) string {
	s.mu.Lock()
	c := s.containers[name]
	s.mu.Unlock()
	if c == nil {
		return ""
	}
	rc, err := c.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	data, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\n--- last log lines of " + name + " ---\n" + string(data)
}

// Container returns the container of service (for container faults).
func (s *Stack) Container(service string) (*testcontainers.DockerContainer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[service]
	return c, ok
}

// Docker is the Docker API client the stack uses.
func (s *Stack) Docker() client.APIClient { return s.docker }

// Env returns the extra environment service currently runs with.
func (s *Stack) Env(service string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.env[service])
}

// Reconfigure recreates, in start order, every instance whose extra environment differs from env (a
// service missing from env goes back to no extras), creates the optional instances env names and
// removes those it does not. A recreated service starts with an empty database, unless its replicas
// share one: that volume stays.
func (s *Stack) Reconfigure(ctx context.Context, env map[string]map[string]string) error {
	for _, inst := range s.instances {
		want, run := extraEnv(env, inst)
		s.mu.Lock()
		cur, has := s.env[inst.Name]
		same := has == run && (maps.Equal(cur, want) || (len(cur) == 0 && len(want) == 0))
		old := s.containers[inst.Name]
		s.mu.Unlock()
		if same && (old != nil || !run) {
			continue
		}
		if run {
			fmt.Fprintf(s.progress, "lab: recreating %s with %v\n", inst.Name, want)
		} else {
			fmt.Fprintf(s.progress, "lab: removing %s\n", inst.Name)
		}
		if old != nil {
			// A lone service's database goes with it: no need to wait for a graceful stop. A replica
			// deregisters on SIGTERM, so its callers drop it before it goes.
			grace := time.Duration(0)
			if s.replicas {
				grace = 2 * time.Second
			}
			if err := old.Terminate(ctx, testcontainers.StopTimeout(grace)); err != nil {
				return fmt.Errorf("lab: remove %s: %w", inst.Name, err)
			}
		}
		s.mu.Lock()
		delete(s.containers, inst.Name)
		delete(s.env, inst.Name)
		if run {
			s.env[inst.Name] = want
		}
		s.mu.Unlock()
		if run {
			if err := s.startInstance(ctx, inst); err != nil {
				return err
			}
		}
	}
	return nil
}

// infra are the containers besides the services' instances: the broker and, replicated, the registry.
func (s *Stack) infra() []string {
	if s.replicas {
		return []string{Broker, Registry}
	}
	return []string{Broker}
}

// running are the names of every container that should be running now: the infrastructure and every
// instance created and not on standby.
func (s *Stack) running() []string {
	out := s.infra()
	for _, inst := range s.instances {
		if s.wanted(inst) && !s.standby(inst.Name) {
			out = append(out, inst.Name)
		}
	}
	return out
}

// Reset undoes every fault: it removes all toxics, enables every proxy, unpauses or starts every
// service container that is not running, and waits until every service is ready again.
func (s *Stack) Reset(ctx context.Context) error {
	if err := s.Toxiproxy.ResetState(); err != nil {
		return fmt.Errorf("lab: reset toxiproxy: %w", err)
	}
	for _, inst := range s.instances {
		if !s.wanted(inst) || !s.standby(inst.Name) {
			continue
		}
		// A standby instance a fault started goes back to standby (SIGTERM: it deregisters).
		if c, ok := s.Container(inst.Name); ok {
			if st, err := c.State(ctx); err == nil && st.Running {
				grace := 2
				if _, err := s.docker.ContainerStop(ctx, c.GetContainerID(), client.ContainerStopOptions{Timeout: &grace}); err != nil {
					return fmt.Errorf("lab: stop %s: %w", inst.Name, err)
				}
			}
		}
	}
	for _, svc := range s.running() {
		c, ok := s.Container(svc)
		if !ok {
			return fmt.Errorf("lab: %s has no container", svc)
		}
		st, err := c.State(ctx)
		if err != nil {
			return fmt.Errorf("lab: state of %s: %w", svc, err)
		}
		switch {
		case st.Paused:
			if _, err := s.docker.ContainerUnpause(ctx, c.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
				return fmt.Errorf("lab: unpause %s: %w", svc, err)
			}
		case !st.Running:
			if _, err := s.docker.ContainerStart(ctx, c.GetContainerID(), client.ContainerStartOptions{}); err != nil {
				return fmt.Errorf("lab: start %s: %w", svc, err)
			}
		}
	}
	return s.WaitReady(ctx, 60*time.Second)
}

// WaitReady polls the broker's /healthz and every service's /readyz (through the relay) until all
// answer 200 or timeout passes.
func (s *Stack) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var steps []func(context.Context) error
	for _, svc := range s.running() {
		steps = append(steps, func(ctx context.Context) error { return s.waitServiceReady(ctx, svc, timeout) })
	}
	return parallel(steps...)(ctx)
}

// waitServiceReady polls svc's /readyz (the broker's /healthz) until it answers 200.
func (s *Stack) waitServiceReady(ctx context.Context, svc string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if svc == Registry {
		return s.waitRegistryReady(ctx, timeout)
	}
	path := "readyz"
	if svc == Broker {
		path = "healthz?js-enabled-only=true"
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ObserveURL(svc, path), nil)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not ready within %s", svc, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitRegistryReady runs the registry's own health probe inside its container until it passes (the
// observation relay serves the services' paths, not etcd's /health).
func (s *Stack) waitRegistryReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, ok := s.Container(Registry)
	if !ok {
		return fmt.Errorf("lab: no %s container", Registry)
	}
	for {
		code, _, err := c.Exec(ctx, []string{"/app", "healthcheck", fmt.Sprintf("http://127.0.0.1:%d/health", registryPort)})
		if err == nil && code == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not ready within %s", Registry, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close removes every container and the network. It is idempotent and safe to call from a signal
// handler, a deferred recover or TestMain.
func (s *Stack) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.stopSignals != nil {
			signal.Stop(s.stopSignals)
			close(s.stopSignals)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		s.mu.Lock()
		cs := maps.Clone(s.containers)
		s.mu.Unlock()
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, c := range cs {
			wg.Go(func() {
				if err := c.Terminate(ctx, testcontainers.StopTimeout(2*time.Second)); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, v := range s.volumes {
			if _, err := s.docker.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true}); err != nil {
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v, err))
			}
		}
		if s.network != nil {
			if err := s.network.Remove(ctx); err != nil {
				errs = append(errs, fmt.Errorf("remove network: %w", err))
			}
		}
		s.closeErr = errors.Join(errs...)
		fmt.Fprintf(s.progress, "lab: stack removed (%d containers)\n", len(cs))
	})
	return s.closeErr
}

// CloseOnPanic closes the stack when the calling goroutine is panicking, then panics on: a panic in a
// test skips TestMain's cleanup. Use it as `defer stack.CloseOnPanic()`.
func (s *Stack) CloseOnPanic() {
	if v := recover(); v != nil {
		_ = s.Close(context.Background())
		panic(v)
	}
}

func (s *Stack) closeOnSignal() {
	sig, ok := <-s.stopSignals
	if !ok {
		return
	}
	fmt.Fprintf(s.progress, "lab: %v: removing the stack\n", sig)
	_ = s.Close(context.Background())
	os.Exit(130)
}

// sweepOrphans removes lab containers and networks left by processes that are gone.
func (s *Stack) sweepOrphans(ctx context.Context) {
	f := make(client.Filters).Add("label", ManagedLabel+"=true")
	cs, err := s.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range cs.Items {
		if ownerAlive(c.Labels[ownerLabel]) {
			continue
		}
		fmt.Fprintf(s.progress, "lab: removing container %s left by a finished run\n", c.ID[:12])
		_, _ = s.docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
	if vs, err := s.docker.VolumeList(ctx, client.VolumeListOptions{Filters: f}); err == nil {
		for _, v := range vs.Items {
			if !ownerAlive(v.Labels[ownerLabel]) {
				_, _ = s.docker.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
			}
		}
	}
	ns, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return
	}
	for _, n := range ns.Items {
		if !ownerAlive(n.Labels[ownerLabel]) {
			_, _ = s.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	}
}

// ownerAlive reports whether the pid in a label is a running process; compose stacks (no label) count
// as alive, since they are not ours to remove.
func ownerAlive(label string) bool {
	pid, err := strconv.Atoi(label)
	if err != nil || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return true
	}
	return syscall.Kill(pid, 0) == nil
}

// writerLogger adapts an io.Writer to testcontainers' logger.
type writerLogger struct{ w io.Writer }

func (l writerLogger) Printf(format string, v ...any) { fmt.Fprintf(l.w, format+"\n", v...) }

// The container faults of package fault; only the shop's services take them (the gateway's and
// Toxiproxy's published ports would move on a restart).

func (s *Stack) serviceID(service string) (string, error) {
	if service == "gateway" || service == "toxiproxy" {
		return "", fmt.Errorf("lab: container faults on %s are not supported (its published port would change)", service)
	}
	c, ok := s.Container(service)
	if !ok {
		return "", fmt.Errorf("lab: no service %q", service)
	}
	return c.GetContainerID(), nil
}

// StopService stops service with SIGTERM, then SIGKILL after 2 s.
func (s *Stack) StopService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	grace := 2
	_, err = s.docker.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &grace})
	return err
}

// KillService sends SIGKILL to service.
func (s *Stack) KillService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	_, err = s.docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"})
	return err
}

// StartService starts a stopped or killed service again and returns once it is ready, so the fault's
// end is when the service is back, not when its process was started.
func (s *Stack) StartService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	if _, err = s.docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return err
	}
	return s.waitServiceReady(ctx, service, 30*time.Second)
}

// PauseService freezes every process of service.
func (s *Stack) PauseService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	_, err = s.docker.ContainerPause(ctx, id, client.ContainerPauseOptions{})
	return err
}

// UnpauseService thaws service.
func (s *Stack) UnpauseService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	_, err = s.docker.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	return err
}

// RestartService stops service (SIGTERM, 2 s grace) and starts it again.
func (s *Stack) RestartService(ctx context.Context, service string) error {
	id, err := s.serviceID(service)
	if err != nil {
		return err
	}
	grace := 2
	_, err = s.docker.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &grace})
	return err
}

// FaultTarget is what package fault acts on in this stack: its Toxiproxy and its containers.
func (s *Stack) FaultTarget() fault.Target {
	return fault.Target{Toxiproxy: s.Toxiproxy, Containers: s}
}

// LinkNames are the names of every proxy a lab stack (or the compose stack, which names its proxies
// alike) may have, for fault.Parse: the links, HTTP and broker, and each replica's proxy on its links.
func LinkNames() []string {
	var names []string
	for _, l := range slices.Concat(AllLinks(), instanceLinks()) {
		names = append(names, l.Name)
	}
	return names
}
