package deploy_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/resilience-lab/lab/contracts/broker"
	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// program is one binary the deployments run, keyed by its compose service and Deployment name.
type program struct {
	binary string // the image is reslab/<binary>:dev, built by `make images`
	// unread returns the names in env the program does not read (a typo, or a setting that went away).
	unread func(t *testing.T, env map[string]string) []string
	// liveness and readiness are the HTTP paths of its probes.
	liveness, readiness string
	// stateful programs own a volume at /data: one replica, replaced not rolled, never autoscaled.
	stateful bool
	// scalable programs keep no state and must have an autoscaler in the cluster.
	scalable bool
}

var programs = map[string]program{
	"catalog":       {binary: "catalog", unread: configReader(catalog.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", stateful: true},
	"payments":      {binary: "payments", unread: configReader(payments.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", stateful: true},
	"orders":        {binary: "orders", unread: configReader(orders.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", stateful: true},
	"gateway":       {binary: "gateway", unread: configReader(gateway.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", scalable: true},
	"notifications": {binary: "notifications", unread: configReader(notifications.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", stateful: true},
	"broker":        {binary: "broker", unread: configReader(broker.ConfigFromEnv), liveness: "/healthz", readiness: "/readyz", stateful: true},
	// Toxiproxy's API has no health paths: it is alive when it answers /version and ready once the last
	// proxy of its config file exists.
	"toxiproxy": {binary: "toxiproxy", unread: sourceReader("../scenarios/lab/toxiproxy/cmd/toxiproxy/main.go"),
		liveness: "/version", readiness: "/proxies/orders-payments"},
	// NATS serves /healthz only: with js-enabled-only it checks the server, without it JetStream's state.
	"nats": {binary: "nats-server", unread: sourceReader("../events/cmd/nats-server/main.go"),
		liveness: "/healthz?js-enabled-only=true", readiness: "/healthz", stateful: true},
	// etcd's /health answers once the member serves; it has no separate liveness path.
	"etcd": {binary: "etcd", unread: sourceReader("../discovery/cmd/etcd/main.go"),
		liveness: "/health", readiness: "/health", stateful: true},
}

// replicaName matches the compose service of one replica of a program: catalog-1, payments-2.
var replicaName = regexp.MustCompile(`^([a-z]+)-([0-9]+)$`)

// programOf returns the program a compose service runs: its own name's, or, for a replica
// (catalog-1), its program's (catalog).
func programOf(service string) (string, program, bool) {
	if p, ok := programs[service]; ok {
		return service, p, true
	}
	if m := replicaName.FindStringSubmatch(service); m != nil {
		p, ok := programs[m[1]]
		return m[1], p, ok
	}
	return "", program{}, false
}

// runtimeEnv are read by the Go runtime of every program.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"}

// configReader learns which names a ConfigFromEnv reads by changing one value at a time: a name it reads
// changes the Config or its errors, a name it ignores changes neither. It also fails the test when the
// environment as given is not a valid configuration.
func configReader[C any](fromEnv func(*platform.Env) C) func(*testing.T, map[string]string) []string {
	read := func(m map[string]string) (C, string) {
		env := platform.EnvFrom(m)
		cfg := fromEnv(env)
		if err := env.Err(); err != nil {
			return cfg, err.Error()
		}
		return cfg, ""
	}
	return func(t *testing.T, env map[string]string) []string {
		t.Helper()
		base, errs := read(env)
		if errs != "" {
			t.Errorf("the environment is not a valid configuration: %s", errs)
		}
		var unread []string
		for name, value := range env {
			if slices.Contains(runtimeEnv, name) {
				continue
			}
			changed := maps.Clone(env)
			changed[name] = value + "0"
			cfg, errs2 := read(changed)
			if reflect.DeepEqual(cfg, base) && errs2 == errs {
				unread = append(unread, name)
			}
		}
		slices.Sort(unread)
		return unread
	}
}

// sourceReader learns the names a main reads from its source: the string constants given to os.Getenv
// and os.LookupEnv, and the first argument of platform.Env's readers (env.String("NATS_LISTEN", …)).
func sourceReader(path string) func(*testing.T, map[string]string) []string {
	return func(t *testing.T, env map[string]string) []string {
		t.Helper()
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		envReaders := []string{"String", "Int", "Float", "Duration", "Bool", "Required", "LogLevel"}
		read := map[string]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, _ := sel.X.(*ast.Ident)
			osCall := recv != nil && recv.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv")
			envCall := recv != nil && recv.Name != "os" && slices.Contains(envReaders, sel.Sel.Name)
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING && (osCall || envCall) {
				if name, err := strconv.Unquote(lit.Value); err == nil {
					read[name] = true
				}
			}
			return true
		})
		if len(read) == 0 {
			t.Fatalf("%s reads no environment variable: the reader no longer recognises how it does", path)
		}
		var unread []string
		for name := range env {
			if !read[name] && !slices.Contains(runtimeEnv, name) {
				unread = append(unread, name)
			}
		}
		slices.Sort(unread)
		return unread
	}
}

// proxy is one entry of a Toxiproxy config file (the shape of its POST /populate).
type proxy struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
}

// readProxies strictly decodes a Toxiproxy config file and checks it against the lab's links: one
// enabled proxy per link, named after it, on the link's port, forwarding to the callee's port. It
// returns the proxies by name; what else a file may hold (the compose stack's replica proxies) is the
// caller's to check.
func readProxies(t *testing.T, data []byte) map[string]proxy {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var list []proxy
	if err := dec.Decode(&list); err != nil {
		t.Fatalf("proxies: %v", err)
	}
	byName := map[string]proxy{}
	for _, p := range list {
		if _, dup := byName[p.Name]; dup {
			t.Errorf("proxy %s is defined twice", p.Name)
		}
		byName[p.Name] = p
	}
	for _, l := range lab.Links {
		p, ok := byName[l.Name]
		if !ok {
			t.Errorf("link %s has no proxy", l.Name)
			continue
		}
		if want := fmt.Sprintf("0.0.0.0:%d", l.Port); p.Listen != want {
			t.Errorf("proxy %s listens on %s, want %s (the lab's port of the link)", l.Name, p.Listen, want)
		}
		if want := fmt.Sprintf("%s:%d", l.Callee, lab.ServicePorts[l.Callee]); p.Upstream != want {
			t.Errorf("proxy %s forwards to %s, want %s", l.Name, p.Upstream, want)
		}
		if !p.Enabled {
			t.Errorf("proxy %s starts disabled", l.Name)
		}
	}
	return byName
}

// proxyPort is the port a proxy listens on.
func proxyPort(t *testing.T, p proxy) int {
	t.Helper()
	_, port, err := net.SplitHostPort(p.Listen)
	if err != nil {
		t.Fatalf("proxy %s: listen %q: %v", p.Name, p.Listen, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("proxy %s: listen %q: %v", p.Name, p.Listen, err)
	}
	return n
}

// urlEnv is the variable a caller reads its callee's base URL from (CATALOG_URL, …).
func urlEnv(callee string) string { return strings.ToUpper(callee) + "_URL" }

// hostPort splits the host and port of a base URL such as http://toxiproxy:20001.
func hostPort(t *testing.T, name, raw string) (string, int) {
	t.Helper()
	u, err := platform.ParseBaseURL(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, raw, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%s=%q: no port", name, raw)
	}
	return u.Hostname(), port
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
