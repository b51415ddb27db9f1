package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/services/platform"
)

// composeFile is the part of a compose file the invariants look at (`docker-compose config` checks the
// schema; YAML anchors and merge keys are resolved while decoding).
type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	ReadOnly    bool              `json:"read_only"`
	Tmpfs       []string          `json:"tmpfs"`
	Healthcheck struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Networks map[string]struct {
		Aliases []string `json:"aliases"`
	} `json:"networks"`
}

// published is every port the stack may publish on the host (container port = host port).
var published = map[string]string{"gateway": "8080", "toxiproxy": "8474", "broker": "9292"}

var interpolation = regexp.MustCompile(`\$\{([A-Z0-9_]+)(:-([^}]*))?\}`)

func readCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, "compose.yaml"), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for name, svc := range c.Services {
		for k, v := range svc.Environment {
			// What compose substitutes when the variable is unset: the default after ":-".
			svc.Environment[k] = interpolation.ReplaceAllStringFunc(v, func(m string) string {
				sub := interpolation.FindStringSubmatch(m)
				if sub[2] == "" {
					t.Errorf("%s: %s=%s has no default: the stack must start with no variable set", name, k, v)
				}
				return sub[3]
			})
		}
	}
	return c
}

func TestComposeServices(t *testing.T) {
	c := readCompose(t)
	for _, want := range []string{"toxiproxy", "catalog-1", "catalog-2", "payments-1", "payments-2", "orders", "gateway", "notifications", "broker", "etcd", "nats"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("compose.yaml has no %s", want)
		}
	}
	for name, svc := range c.Services {
		t.Run(name, func(t *testing.T) {
			_, prog, ok := programOf(name)
			if !ok {
				t.Fatalf("%s is no program of the lab (programs_test.go lists them)", name)
			}
			if want := "reslab/" + prog.binary + ":dev"; svc.Image != want {
				t.Errorf("image %q, want %q: only images `make images` builds can run (nothing is pulled)", svc.Image, want)
			}
			if !svc.ReadOnly || !slices.Contains(svc.Tmpfs, "/tmp") {
				t.Errorf("want a read-only root filesystem with a tmpfs at /tmp (read_only %v, tmpfs %v)", svc.ReadOnly, svc.Tmpfs)
			}
			checkHealthcheck(t, svc, prog)
			checkPorts(t, name, svc)
			if unread := prog.unread(t, svc.Environment); len(unread) > 0 {
				t.Errorf("environment variables %s does not read: %v", name, unread)
			}
			if prog.stateful {
				checkDataVolume(t, c, svc)
			}
		})
	}
}

func checkHealthcheck(t *testing.T, svc composeService, prog program) {
	t.Helper()
	test := svc.Healthcheck.Test
	if len(test) != 4 || test[0] != "CMD" || test[1] != "/app" || test[2] != "healthcheck" {
		t.Fatalf("healthcheck %q, want [CMD /app healthcheck URL] (the images have no shell)", test)
	}
	u, err := url.Parse(test[3])
	if err != nil || u.Hostname() != "127.0.0.1" {
		t.Errorf("healthcheck URL %q: want one on 127.0.0.1", test[3])
		return
	}
	if path := u.RequestURI(); path != prog.readiness {
		t.Errorf("healthcheck probes %s, want the readiness path %s", path, prog.readiness)
	}
}

func checkPorts(t *testing.T, name string, svc composeService) {
	t.Helper()
	want, publishes := published[name]
	if !publishes && len(svc.Ports) > 0 {
		t.Errorf("publishes %v: only %v are published", svc.Ports, published)
	}
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "127.0.0.1" {
			t.Errorf("port %q: publish as 127.0.0.1:HOST:CONTAINER, never on every interface", p)
			continue
		}
		if parts[1] != want || parts[2] != want {
			t.Errorf("port %q, want 127.0.0.1:%s:%s", p, want, want)
		}
	}
	if publishes && len(svc.Ports) != 1 {
		t.Errorf("ports %v, want exactly 127.0.0.1:%s:%s", svc.Ports, want, want)
	}
}

func checkDataVolume(t *testing.T, c composeFile, svc composeService) {
	t.Helper()
	for _, v := range svc.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if dst == "/data" {
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("volume %q: %s is not a named volume of the stack (down -v must remove it)", v, src)
			}
			return
		}
	}
	t.Errorf("volumes %v: a stateful service keeps /data on a named volume", svc.Volumes)
}

// TestComposeLinksThroughToxiproxy: every caller reaches every callee through the link's own proxy,
// created from the config file before any caller starts.
func TestComposeLinksThroughToxiproxy(t *testing.T) {
	c := readCompose(t)
	tp := c.Services["toxiproxy"]
	i := slices.Index(tp.Command, "-config")
	if i < 0 || i+1 >= len(tp.Command) {
		t.Fatalf("toxiproxy command %q: want -config FILE, so the proxies exist at start", tp.Command)
	}
	configPath := tp.Command[i+1]
	if !slices.Contains(tp.Volumes, "./toxiproxy/proxies.json:"+configPath+":ro") {
		t.Errorf("toxiproxy volumes %v: want ./toxiproxy/proxies.json mounted read-only at %s", tp.Volumes, configPath)
	}
	proxies, order := readComposeProxies(t)
	if want := "/proxies/" + order[len(order)-1]; programs["toxiproxy"].readiness != want {
		t.Errorf("toxiproxy is ready on %s, want %s (the last proxy of the file)", programs["toxiproxy"].readiness, want)
	}

	for _, l := range lab.Links {
		caller, ok := c.Services[l.Caller]
		if !ok {
			t.Fatalf("link %s: no service %s", l.Name, l.Caller)
		}
		name := urlEnv(l.Callee)
		raw, ok := caller.Environment[name]
		if !ok {
			t.Errorf("link %s: %s does not set %s", l.Name, l.Caller, name)
			continue
		}
		host, port := hostPort(t, name, raw)
		if want := proxyPort(t, proxies[l.Name]); host != "toxiproxy" || port != want {
			t.Errorf("link %s: %s=%s, want http://toxiproxy:%d (its proxy)", l.Name, name, raw, want)
		}
		instances := instancesOf(c, l.Callee)
		if len(instances) == 0 {
			t.Fatalf("link %s: no service runs %s", l.Name, l.Callee)
		}
		for _, dep := range append([]string{"toxiproxy"}, instances...) {
			if caller.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("link %s: %s must wait for %s to be healthy (depends_on condition service_healthy)", l.Name, l.Caller, dep)
			}
		}
		// The link's proxy forwards to the callee's name: the service itself or an alias every replica has.
		for _, inst := range instances {
			if inst != l.Callee && !slices.Contains(c.Services[inst].Networks["default"].Aliases, l.Callee) {
				t.Errorf("link %s: its proxy forwards to %s, but replica %s has no alias %s", l.Name, proxies[l.Name].Upstream, inst, l.Callee)
			}
		}
	}
}

// registry is the etcd every registering or discovering service of the stack uses.
const registry = "http://etcd:2379"

// replicated are the programs the stack runs more than one replica of (issue 9: one replica can be
// degraded alone while the other serves).
var replicated = []string{"catalog", "payments"}

// TestComposeReplicas: catalog and payments run two replicas each over one database, every shop service
// that is called registers in etcd under its own URL, and every discovering caller dials each instance
// through a proxy of its own for that link, so a fault on one replica's proxy leaves the other alone.
func TestComposeReplicas(t *testing.T) {
	c := readCompose(t)
	proxies, _ := readComposeProxies(t)
	if _, ok := c.Services["etcd"]; !ok {
		t.Fatalf("compose.yaml has no etcd, the registry")
	}
	for name, svc := range c.Services {
		if ep, ok := svc.Environment["REGISTRY_ENDPOINTS"]; ok {
			if ep != registry {
				t.Errorf("%s: REGISTRY_ENDPOINTS=%s, want %s", name, ep, registry)
			}
			if svc.DependsOn["etcd"].Condition != "service_healthy" {
				t.Errorf("%s uses the registry but does not wait for etcd to be healthy", name)
			}
		}
	}

	for _, prog := range replicated {
		instances := instancesOf(c, prog)
		if len(instances) < 2 {
			t.Errorf("%s runs as %v, want at least two replicas", prog, instances)
			continue
		}
		first := c.Services[instances[0]]
		for _, inst := range instances {
			svc := c.Services[inst]
			// Replicas differ only in who they are: one database, one configuration.
			for k, v := range first.Environment {
				if k != "SERVICE_INSTANCE_ID" && k != "SERVICE_ADVERTISE_URL" && svc.Environment[k] != v {
					t.Errorf("%s: %s=%q, but %s has %q: replicas share one configuration", inst, k, svc.Environment[k], instances[0], v)
				}
			}
			if !slices.Equal(svc.Volumes, first.Volumes) {
				t.Errorf("%s: volumes %v, %s has %v: replicas share their service's database", inst, svc.Volumes, instances[0], first.Volumes)
			}
		}
	}

	// Every instance of a called service registers under its own name and port.
	for _, l := range lab.Links {
		for _, inst := range instancesOf(c, l.Callee) {
			env := c.Services[inst].Environment
			if env["REGISTRY_ENDPOINTS"] != registry {
				t.Errorf("%s: does not register (REGISTRY_ENDPOINTS=%q): its callers would not find it", inst, env["REGISTRY_ENDPOINTS"])
			}
			if want := instanceURL(inst, l.Callee); env["SERVICE_ADVERTISE_URL"] != want {
				t.Errorf("%s: SERVICE_ADVERTISE_URL=%q, want %s", inst, env["SERVICE_ADVERTISE_URL"], want)
			}
			if env["SERVICE_INSTANCE_ID"] != inst {
				t.Errorf("%s: SERVICE_INSTANCE_ID=%q, want %s (unique in the registry)", inst, env["SERVICE_INSTANCE_ID"], inst)
			}
		}
	}

	// Each discovering caller maps every registered instance of each callee to the instance's own proxy
	// of that link; an unmapped instance would be dialled directly, past every fault.
	used := map[string]string{} // proxy name → link
	for _, l := range lab.Links {
		caller := c.Services[l.Caller]
		if caller.Environment["REGISTRY_ENDPOINTS"] == "" {
			t.Errorf("link %s: %s does not discover %s (no REGISTRY_ENDPOINTS)", l.Name, l.Caller, l.Callee)
			continue
		}
		env := platform.EnvFrom(caller.Environment)
		mapped := discovery.BalancerConfigFromEnv(env, l.Name).Proxies
		if err := env.Err(); err != nil {
			t.Errorf("link %s: %v", l.Name, err)
		}
		instances := instancesOf(c, l.Callee)
		for _, inst := range instances {
			registered := instanceURL(inst, l.Callee)
			dialled, ok := mapped[registered]
			if !ok {
				t.Errorf("link %s: %s has no proxy for %s in %sINSTANCE_PROXIES", l.Name, l.Caller, registered, resilience.EnvPrefix(l.Name))
				continue
			}
			host, port := hostPort(t, "INSTANCE_PROXIES", dialled)
			p, found := proxyOnPort(proxies, port)
			wantName := l.Name
			if inst != l.Callee {
				wantName = l.Name + strings.TrimPrefix(inst, l.Callee) // gateway-catalog-1
			}
			switch {
			case host != "toxiproxy" || !found:
				t.Errorf("link %s: %s is dialled at %s, no proxy of the stack", l.Name, registered, dialled)
			case p.Name != wantName:
				t.Errorf("link %s: %s is dialled through proxy %s, want %s", l.Name, registered, p.Name, wantName)
			case p.Upstream != strings.TrimPrefix(registered, "http://"):
				t.Errorf("link %s: proxy %s forwards to %s, want %s", l.Name, p.Name, p.Upstream, strings.TrimPrefix(registered, "http://"))
			}
			used[p.Name] = l.Name
		}
		if len(mapped) != len(instances) {
			t.Errorf("link %s: %d instance proxies for %d instances (%v): one each", l.Name, len(mapped), len(instances), mapped)
		}
	}
	for name := range proxies {
		if _, isLink := lab.LinkByName(name); !isLink && used[name] == "" {
			t.Errorf("proxy %s is neither a link's nor an instance's any caller dials", name)
		}
	}

	// The relay reaches every instance by its own name, so each replica's metrics can be read.
	observe := observed(c)
	for _, prog := range []string{"catalog", "payments", "orders", "gateway", "notifications"} {
		for _, inst := range instancesOf(c, prog) {
			if want := instanceURL(inst, prog); observe[inst] != want {
				t.Errorf("LAB_OBSERVE has %s=%q, want %s", inst, observe[inst], want)
			}
		}
	}
}

// observed is the Toxiproxy relay's LAB_OBSERVE: each observable name's base URL.
func observed(c composeFile) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(c.Services["toxiproxy"].Environment["LAB_OBSERVE"], ",") {
		name, u, _ := strings.Cut(pair, "=")
		out[name] = u
	}
	return out
}

// TestComposeBrokerThroughToxiproxy: every service that publishes or consumes events reaches NATS
// through its own proxy, named and numbered as the chaos lab's broker links.
func TestComposeBrokerThroughToxiproxy(t *testing.T) {
	for _, p := range brokerProblems(t, readCompose(t), readComposeProxyList(t), lab.BrokerLinks) {
		t.Error(p)
	}
}

// TestComposeBrokerCheckFailsOnBrokenFiles: brokerProblems reports each way the NATS wiring can break,
// so TestComposeBrokerThroughToxiproxy passing means something.
func TestComposeBrokerCheckFailsOnBrokenFiles(t *testing.T) {
	without := func(list []proxy, name string) []proxy {
		return slices.DeleteFunc(list, func(p proxy) bool { return p.Name == name })
	}
	cases := []struct {
		name   string
		break_ func(t *testing.T, c composeFile, list []proxy) (composeFile, []proxy)
		want   string // a problem brokerProblems must report; "" for none
	}{
		{"a replica dials NATS directly", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			c.Services["catalog-2"].Environment["NATS_URL"] = "nats://nats:4222"
			return c, l
		}, `catalog-2: NATS_URL="nats://nats:4222", want nats://toxiproxy:20007`},
		{"a service uses another's proxy", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			c.Services["orders"].Environment["NATS_URL"] = "nats://toxiproxy:20007"
			return c, l
		}, `orders: NATS_URL="nats://toxiproxy:20007", want nats://toxiproxy:20006`},
		{"a replica without NATS_URL", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			delete(c.Services["payments-1"].Environment, "NATS_URL")
			return c, l
		}, `payments-1: NATS_URL="", want nats://toxiproxy:20008`},
		{"a service that does not wait for NATS", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			delete(c.Services["notifications"].DependsOn, "nats")
			return c, l
		}, "notifications must wait for nats to be healthy"},
		{"a service that does not wait for Toxiproxy", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			delete(c.Services["catalog-1"].DependsOn, "toxiproxy")
			return c, l
		}, "catalog-1 must wait for toxiproxy to be healthy"},
		{"no notifications", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			delete(c.Services, "notifications")
			return c, l
		}, "broker link notifications-nats: no service runs notifications"},
		{"a missing proxy", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			return c, without(l, "payments-nats")
		}, "broker link payments-nats has no proxy"},
		{"a proxy to the monitoring port", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			named(t, l, "orders-nats").Upstream = "nats:8222"
			return c, l
		}, "proxy orders-nats forwards to nats:8222, want nats:4222"},
		{"a proxy on another port", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			named(t, l, "catalog-nats").Listen = "0.0.0.0:20070"
			return c, l
		}, "proxy catalog-nats listens on 0.0.0.0:20070, want 0.0.0.0:20007"},
		{"a stray proxy to NATS", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			return c, append(slices.Clone(l[:len(l)-1]), proxy{Name: "gateway-nats", Listen: "0.0.0.0:20099", Upstream: "nats:4222", Enabled: true}, l[len(l)-1])
		}, "proxy gateway-nats forwards to NATS but is no broker link"},
		{"a broker proxy appended last", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			i := slices.IndexFunc(l, func(p proxy) bool { return p.Name == "notifications-nats" })
			return c, append(slices.Delete(slices.Clone(l), i, i+1), l[i])
		}, "toxiproxy's healthcheck waits for /proxies/orders-payments, but the last proxy of its file is notifications-nats"},
		{"NATS not observable", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			env := c.Services["toxiproxy"].Environment
			env["LAB_OBSERVE"] = strings.Replace(env["LAB_OBSERVE"], ",nats=http://nats:8222", "", 1)
			return c, l
		}, `LAB_OBSERVE has nats="", want http://nats:8222`},
		{"a second replica of a linked service wired like the first", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			c.Services["notifications-2"] = c.Services["notifications"]
			return c, l
		}, ""}, // the control: a replica is checked as its service and passes when wired alike
		{"a third replica wired apart", func(t *testing.T, c composeFile, l []proxy) (composeFile, []proxy) {
			third := c.Services["payments-2"]
			third.Environment = maps.Clone(third.Environment)
			third.Environment["NATS_URL"] = "nats://toxiproxy:20006"
			c.Services["payments-3"] = third
			return c, l
		}, `payments-3: NATS_URL="nats://toxiproxy:20006", want nats://toxiproxy:20008`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, list := tc.break_(t, readCompose(t), readComposeProxyList(t))
			checkProblems(t, brokerProblems(t, c, list, lab.BrokerLinks), tc.want)
		})
	}
	// The lab without notifications' broker link: the stack's notifications reads NATS_URL outside any
	// link, so a broker fault would miss it.
	links := slices.DeleteFunc(slices.Clone(lab.BrokerLinks), func(l lab.Link) bool { return l.Caller == "notifications" })
	checkProblems(t, brokerProblems(t, readCompose(t), readComposeProxyList(t), links),
		"notifications reads NATS_URL, but no broker link of the lab starts at notifications")
}

// named returns the proxy called name in list, to break it in place.
func named(t *testing.T, list []proxy, name string) *proxy {
	t.Helper()
	i := slices.IndexFunc(list, func(p proxy) bool { return p.Name == name })
	if i < 0 {
		t.Fatalf("toxiproxy/proxies.json has no proxy %s", name)
	}
	return &list[i]
}

func checkProblems(t *testing.T, problems []string, want string) {
	t.Helper()
	if want == "" {
		if len(problems) > 0 {
			t.Errorf("problems %q, want none", problems)
		}
		return
	}
	if !slices.Contains(problems, want) {
		t.Errorf("problems %q, want one %q", problems, want)
	}
}

// brokerProblems returns what is wrong with the stack's wiring to NATS: every broker link of the chaos
// lab (scenarios/lab.BrokerLinks) has its proxy, enabled, on the link's port and forwarding to NATS;
// every instance of the link's service (both replicas of catalog and payments) sets NATS_URL to that
// proxy and starts once Toxiproxy and NATS are healthy; nothing else dials NATS; the relay can read
// NATS's JetStream summary; and the last proxy of the file is still the one Toxiproxy's healthcheck
// waits for.
// checkBrokerProxies reports, through fail, every proxy of list forwarding to upstream (NATS) that is no
// broker link, and every broker link whose proxy is missing, listens on another port, forwards
// elsewhere or starts disabled: the proxies file's part of the compose and the k8s broker checks.
func checkBrokerProxies(list []proxy, links []lab.Link, upstream string, fail func(format string, args ...any)) {
	byName := map[string]proxy{}
	for _, p := range list {
		byName[p.Name] = p
		if p.Upstream == upstream && !slices.ContainsFunc(links, func(l lab.Link) bool { return l.Name == p.Name }) {
			fail("proxy %s forwards to NATS but is no broker link", p.Name)
		}
	}
	for _, l := range links {
		p, ok := byName[l.Name]
		switch {
		case !ok:
			fail("broker link %s has no proxy", l.Name)
		case p.Listen != fmt.Sprintf("0.0.0.0:%d", l.Port):
			fail("proxy %s listens on %s, want 0.0.0.0:%d", l.Name, p.Listen, l.Port)
		case p.Upstream != upstream:
			fail("proxy %s forwards to %s, want %s", l.Name, p.Upstream, upstream)
		case !p.Enabled:
			fail("proxy %s starts disabled", l.Name)
		}
	}
}

func brokerProblems(t *testing.T, c composeFile, list []proxy, links []lab.Link) []string {
	t.Helper()
	var ps []string
	fail := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if _, ok := c.Services[lab.Broker]; !ok {
		fail("compose.yaml has no %s", lab.Broker)
	}
	upstream := fmt.Sprintf("%s:%d", lab.Broker, lab.ServicePorts[lab.Broker])
	checkBrokerProxies(list, links, upstream, fail)
	callers := map[string]bool{}
	for _, l := range links {
		callers[l.Caller] = true
		instances := instancesOf(c, l.Caller)
		if len(instances) == 0 {
			fail("broker link %s: no service runs %s", l.Name, l.Caller)
		}
		for _, inst := range instances {
			svc := c.Services[inst]
			if got, want := svc.Environment["NATS_URL"], fmt.Sprintf("nats://toxiproxy:%d", l.Port); got != want {
				fail("%s: NATS_URL=%q, want %s", inst, got, want)
			}
			for _, dep := range []string{"toxiproxy", lab.Broker} {
				if svc.DependsOn[dep].Condition != "service_healthy" {
					fail("%s must wait for %s to be healthy", inst, dep)
				}
			}
		}
	}
	// A program that reads NATS_URL outside every broker link would escape the broker faults.
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		prog, p, ok := programOf(name)
		if !ok || callers[prog] {
			continue
		}
		env := maps.Clone(c.Services[name].Environment)
		env["NATS_URL"] = "nats://toxiproxy:4222"
		if !slices.Contains(p.unread(t, env), "NATS_URL") {
			fail("%s reads NATS_URL, but no broker link of the lab starts at %s", name, prog)
		}
	}
	if got, want := observed(c)[lab.Broker], fmt.Sprintf("http://%s:8222", lab.Broker); got != want {
		fail("LAB_OBSERVE has %s=%q, want %s", lab.Broker, got, want)
	}
	if hc := c.Services["toxiproxy"].Healthcheck.Test; len(hc) == 4 && len(list) > 0 {
		if u, err := url.Parse(hc[3]); err != nil || u.Path != "/proxies/"+list[len(list)-1].Name {
			fail("toxiproxy's healthcheck waits for %s, but the last proxy of its file is %s", u.Path, list[len(list)-1].Name)
		}
	}
	return ps
}

// readComposeProxyList reads the compose stack's Toxiproxy file in file order.
func readComposeProxyList(t *testing.T) []proxy {
	t.Helper()
	var list []proxy
	if err := json.Unmarshal(readFile(t, "toxiproxy/proxies.json"), &list); err != nil || len(list) == 0 {
		t.Fatalf("toxiproxy/proxies.json: %v (%d proxies)", err, len(list))
	}
	return list
}

// readComposeProxies reads the compose stack's Toxiproxy file: its proxies by name and in file order.
func readComposeProxies(t *testing.T) (map[string]proxy, []string) {
	t.Helper()
	list := readComposeProxyList(t)
	order := make([]string, len(list))
	for i, p := range list {
		order[i] = p.Name
	}
	return readProxies(t, readFile(t, "toxiproxy/proxies.json")), order
}

// instancesOf returns the compose services that run program, sorted: the program's own service or its
// replicas.
func instancesOf(c composeFile, prog string) []string {
	var out []string
	for name := range c.Services {
		if p, _, ok := programOf(name); ok && p == prog {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// instanceURL is the URL an instance is reached at inside the stack: its own name and its program's port.
func instanceURL(instance, prog string) string {
	return fmt.Sprintf("http://%s:%d", instance, lab.ServicePorts[prog])
}

func proxyOnPort(proxies map[string]proxy, port int) (proxy, bool) {
	for _, p := range proxies {
		if strings.HasSuffix(p.Listen, fmt.Sprintf(":%d", port)) {
			return p, true
		}
	}
	return proxy{}, false
}
