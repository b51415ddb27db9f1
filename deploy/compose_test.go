package deploy_test

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/resilience-lab/lab/scenarios/lab"
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
	for _, want := range []string{"toxiproxy", "catalog", "payments", "orders", "gateway", "broker"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("compose.yaml has no %s", want)
		}
	}
	for name, svc := range c.Services {
		t.Run(name, func(t *testing.T) {
			prog, ok := programs[name]
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
	proxies := readProxies(t, readFile(t, "toxiproxy/proxies.json"))
	last := lab.Links[len(lab.Links)-1].Name
	if want := "/proxies/" + last; programs["toxiproxy"].readiness != want {
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
		for _, dep := range []string{"toxiproxy", l.Callee} {
			if caller.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("link %s: %s must wait for %s to be healthy (depends_on condition service_healthy)", l.Name, l.Caller, dep)
			}
		}
	}
}
