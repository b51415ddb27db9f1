package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/services/gateway"
)

const k8sDir = "k8s"

// kinds are the object kinds the manifests may hold, each decoded into its k8s.io/api type.
var kinds = map[string]func() any{
	"apps/v1 Deployment":                     func() any { return new(appsv1.Deployment) },
	"v1 Service":                             func() any { return new(corev1.Service) },
	"v1 PersistentVolumeClaim":               func() any { return new(corev1.PersistentVolumeClaim) },
	"v1 ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1 Secret":                              func() any { return new(corev1.Secret) },
	"v1 Namespace":                           func() any { return new(corev1.Namespace) },
	"policy/v1 PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
}

// kustomizations are what each kustomization must render; every directory with a kustomization.yaml
// (but components, which render inside an overlay) must be listed here.
var kustomizations = map[string]struct {
	namespace string
	devTokens bool // GATEWAY_DEV_TOKENS=true: the dev overlays only
	// jwtInGit: the overlay generates the gateway's key from a literal, which must say it is for dev.
	// Otherwise the Secret is supplied to the cluster, never rendered from git.
	jwtInGit  bool
	toxiproxy bool // every link through its Toxiproxy proxy, every broker link through its own
	// pacedEvents: the events services' EVENTS_* are the compose stack's (short fault runs); otherwise
	// none is set and the code's defaults hold.
	pacedEvents bool
}{
	"base":           {},
	"overlays/dev":   {namespace: "reslab-dev", devTokens: true, jwtInGit: true},
	"overlays/chaos": {namespace: "reslab-chaos", devTokens: true, jwtInGit: true, toxiproxy: true, pacedEvents: true},
	"overlays/prod":  {namespace: "reslab"},
}

// manifests are the objects one kustomization renders, decoded.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pvcs        map[string]*corev1.PersistentVolumeClaim
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	namespaces  []*corev1.Namespace
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

// decodeStrict decodes one YAML document into the type of its kind, refusing unknown and duplicate
// fields.
func decodeStrict(doc []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	newObj, ok := kinds[head.APIVersion+" "+head.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q of %q is not one the lab deploys (k8s_test.go lists them)", head.Kind, head.APIVersion)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// TestK8sSourcesDecodeStrictly decodes every file under k8s/ on its own: kustomizations into kustomize's
// type, the rest (patches too) into the k8s.io/api type of their kind.
func TestK8sSourcesDecodeStrictly(t *testing.T) {
	var kustomizationDirs []string
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data := readFile(t, path)
		switch {
		case d.Name() == "kustomization.yaml":
			var k types.Kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			if k.Kind != types.ComponentKind {
				dir, _ := filepath.Rel(k8sDir, filepath.Dir(path))
				kustomizationDirs = append(kustomizationDirs, filepath.ToSlash(dir))
			}
		case strings.HasSuffix(path, ".yaml"):
			docs, err := splitDocuments(data)
			if err != nil {
				t.Errorf("%s: %v", path, err)
			}
			for i, doc := range docs {
				if _, err := decodeStrict(doc); err != nil {
					t.Errorf("%s, document %d: %v", path, i+1, err)
				}
			}
		case d.Name() == "proxies.json":
			// The component's copy of the compose stack's link and broker proxies: the cluster runs no
			// replica proxies (one replica per stateful program), so it has those and nothing else.
			k8sProxies := readProxies(t, data)
			if len(k8sProxies) != len(lab.AllLinks()) {
				t.Errorf("%s has %d proxies, want the %d links' and broker links'", path, len(k8sProxies), len(lab.AllLinks()))
			}
			composeProxies := readProxies(t, readFile(t, "toxiproxy/proxies.json"))
			for name, p := range k8sProxies {
				if composeProxies[name] != p {
					t.Errorf("%s: proxy %s is %+v, compose's %+v: keep one set of link proxies for compose and k8s", path, name, p, composeProxies[name])
				}
			}
		default:
			t.Errorf("%s: unexpected file in k8s/", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(kustomizationDirs)
	if want := slices.Sorted(maps.Keys(kustomizations)); !slices.Equal(kustomizationDirs, want) {
		t.Errorf("kustomizations %v, want %v: every one is rendered and checked below", kustomizationDirs, want)
	}
}

// render builds a kustomization as `kubectl apply -k` would (load restrictions on) and decodes every
// object strictly.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(k8sDir, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{},
	}
	for _, r := range resources.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%s renders %s: %v", dir, r.CurId(), err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			m.pvcs[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		}
	}
	return m
}

func TestK8sKustomizations(t *testing.T) {
	for _, dir := range slices.Sorted(maps.Keys(kustomizations)) {
		want := kustomizations[dir]
		t.Run(dir, func(t *testing.T) {
			m := render(t, dir)
			wantApps := []string{"catalog", "gateway", "nats", "notifications", "orders", "payments"}
			if want.toxiproxy {
				wantApps = append(wantApps, "toxiproxy")
				slices.Sort(wantApps)
			}
			if got := slices.Sorted(maps.Keys(m.deployments)); !slices.Equal(got, wantApps) {
				t.Errorf("Deployments %v, want %v", got, wantApps)
			}
			checkNamespaces(t, m, want.namespace)
			for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
				t.Run(name, func(t *testing.T) {
					d := m.deployments[name]
					prog, ok := programs[name]
					if !ok {
						t.Fatalf("Deployment %s runs no program of the lab (programs_test.go lists them)", name)
					}
					checkPod(t, m, d, prog)
					checkExposure(t, m, d, prog)
					checkEnv(t, m, d, prog)
				})
			}
			checkLinks(t, m, want.toxiproxy)
			for _, p := range k8sBrokerProblems(t, m, readCompose(t), want.toxiproxy, want.pacedEvents, lab.BrokerLinks) {
				t.Error(p)
			}
			checkJWTSecret(t, m, want.devTokens, want.jwtInGit)
		})
	}
}

func checkNamespaces(t *testing.T, m manifests, namespace string) {
	t.Helper()
	if namespace == "" {
		if len(m.namespaces) > 0 {
			t.Errorf("the base renders a Namespace: leave namespaces to the overlays")
		}
		return
	}
	if len(m.namespaces) != 1 || m.namespaces[0].Name != namespace {
		t.Fatalf("want exactly the Namespace %s", namespace)
	}
	// The restricted Pod Security Standard holds every pod to what checkPod checks, in the cluster too.
	if got := m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s enforces pod security %q, want restricted", namespace, got)
	}
}

// checkPod: the image, the probes, the resources, the securityContext and the volumes of a Deployment.
func checkPod(t *testing.T, m manifests, d *appsv1.Deployment, prog program) {
	t.Helper()
	pod := d.Spec.Template.Spec
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("shares a host namespace (hostNetwork %v, hostPID %v, hostIPC %v)", pod.HostNetwork, pod.HostPID, pod.HostIPC)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("mounts a service account token it never uses: set automountServiceAccountToken: false")
	}
	if len(pod.InitContainers) > 0 || len(pod.EphemeralContainers) > 0 || len(pod.Containers) != 1 {
		t.Fatalf("want exactly one container, got %d (and %d init containers)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	for _, p := range c.Ports {
		// A name over 15 characters (notifications-nats) is refused by the API server, not by kustomize.
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			t.Errorf("container port %d: name %q: %v", p.ContainerPort, p.Name, errs)
		}
	}
	if want := "reslab/" + prog.binary + ":dev"; c.Image != want {
		t.Errorf("image %q, want %q: only images `make images` builds", c.Image, want)
	}
	checkProbe(t, c, "liveness", c.LivenessProbe, prog.liveness)
	checkProbe(t, c, "readiness", c.ReadinessProbe, prog.readiness)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s: want both, the request ≤ the limit", res, req.String(), lim.String())
		}
	}
	checkSecurityContext(t, pod.SecurityContext, c.SecurityContext)

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.Volume{}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("mounts %s, which is no volume of the pod", vm.Name)
			continue
		}
		mounts[vm.MountPath] = v
		if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil {
			t.Errorf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	if v, ok := mounts["/tmp"]; !ok || v.EmptyDir == nil {
		t.Errorf("/tmp must be an emptyDir (the root filesystem is read-only)")
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if prog.stateful {
		v, ok := mounts["/data"]
		if !ok || v.PersistentVolumeClaim == nil || m.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
			t.Errorf("/data must be a PersistentVolumeClaim rendered beside it")
		}
		// One SQLite file (or JetStream store) has one writer: a second replica would split the data.
		if replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("replicas %d, strategy %q: a stateful program runs one replica, replaced with Recreate", replicas, d.Spec.Strategy.Type)
		}
	} else if _, ok := mounts["/data"]; ok {
		t.Errorf("mounts /data, but keeps no state")
	}
	if prog.scalable && replicas < 2 {
		t.Errorf("replicas %d: a stateless program runs at least two", replicas)
	}
}

func checkProbe(t *testing.T, c corev1.Container, kind string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("no HTTP %s probe", kind)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe on %s, want %s", kind, p.HTTPGet.Path, path)
	}
	if !containerHasPort(c, p.HTTPGet.Port) {
		t.Errorf("%s probe on port %s, which the container does not declare", kind, p.HTTPGet.Port.String())
	}
	if p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 {
		t.Errorf("%s probe: set its period and timeout", kind)
	}
}

func containerHasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

// checkSecurityContext: the effective settings (the container's, else the pod's) are those of the
// restricted Pod Security Standard, as uid 65532 of the images.
func checkSecurityContext(t *testing.T, pod *corev1.PodSecurityContext, c *corev1.SecurityContext) {
	t.Helper()
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if c == nil {
		t.Fatalf("no container securityContext")
	}
	nonRoot := c.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	uid := c.RunAsUser
	if uid == nil {
		uid = pod.RunAsUser
	}
	seccomp := c.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	switch {
	case nonRoot == nil || !*nonRoot:
		t.Errorf("runAsNonRoot is not true")
	case uid == nil || *uid != 65532:
		t.Errorf("runAsUser is not 65532 (the images' user)")
	case pod.FSGroup == nil || *pod.FSGroup != 65532:
		t.Errorf("fsGroup is not 65532: volumes would not be writable by the program")
	case c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation:
		t.Errorf("allowPrivilegeEscalation is not false")
	case c.Privileged != nil && *c.Privileged:
		t.Errorf("privileged")
	case c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem:
		t.Errorf("readOnlyRootFilesystem is not true")
	case c.Capabilities == nil || !slices.Equal(c.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(c.Capabilities.Add) > 0:
		t.Errorf("capabilities: want drop [ALL] and nothing added")
	case seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccompProfile is not RuntimeDefault")
	}
}

// checkExposure: exactly one Service and one PodDisruptionBudget select the Deployment's pods, the
// Service's ports reach declared container ports, and only stateless programs are autoscaled.
func checkExposure(t *testing.T, m manifests, d *appsv1.Deployment, prog program) {
	t.Helper()
	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector does not match its pod template (%v)", err)
	}
	var services []*corev1.Service
	for _, s := range m.services {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			services = append(services, s)
		}
	}
	if len(services) != 1 || services[0].Name != d.Name {
		t.Errorf("want one Service named %s selecting its pods, got %d", d.Name, len(services))
	}
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				t.Errorf("Service %s port %d: name %q: %v", s.Name, p.Port, p.Name, errs)
			}
			if !containerHasPort(d.Spec.Template.Spec.Containers[0], p.TargetPort) {
				t.Errorf("Service %s port %s targets %s, which the container does not declare", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	var pdbs int
	for _, p := range m.pdbs {
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !s.Empty() && s.Matches(podLabels) {
			pdbs++
			if prog.stateful && (p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1) {
				// minAvailable: 1 on a single replica would block every node drain.
				t.Errorf("PodDisruptionBudget %s of a single replica must allow one unavailable", p.Name)
			}
		}
	}
	if pdbs != 1 {
		t.Errorf("want one PodDisruptionBudget selecting its pods, got %d", pdbs)
	}
	var hpas int
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || m.deployments[ref.Name] == nil {
			t.Errorf("HorizontalPodAutoscaler %s targets %s %s, which is not rendered", h.Name, ref.Kind, ref.Name)
		}
		if ref.Name != d.Name {
			continue
		}
		hpas++
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: want 2 ≤ minReplicas ≤ maxReplicas", h.Name)
		}
	}
	if prog.scalable && hpas != 1 {
		t.Errorf("want one HorizontalPodAutoscaler, got %d", hpas)
	}
	if !prog.scalable && hpas > 0 {
		t.Errorf("is autoscaled, but one replica must own its state")
	}
}

// checkEnv: every variable is one the program reads, the configuration it makes is valid, and no value
// is a Secret's but the gateway's key.
func checkEnv(t *testing.T, m manifests, d *appsv1.Deployment, prog program) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s is set twice", e.Name)
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			// An optional key missing from the Secret leaves the variable unset, as the kubelet does.
			if v, ok := secretValue(m, e.ValueFrom.SecretKeyRef); ok {
				env[e.Name] = v
			}
		case e.ValueFrom.ResourceFieldRef != nil && e.Name == "GOMEMLIMIT":
			// The runtime reads the limit in bytes; the check needs a name, not the value.
			env[e.Name] = ""
		default:
			t.Errorf("%s comes from an unexpected source", e.Name)
		}
	}
	if unread := prog.unread(t, env); len(unread) > 0 {
		t.Errorf("environment variables %s does not read: %v", d.Name, unread)
	}
}

// secretValue is the rendered value of a Secret key or, for a Secret supplied to the cluster (not in
// git), a stand-in of the key's minimum length. An optional key is there only if the rendered Secret has
// it: a supplied Secret is taken to hold none (a key rotation is not under way).
func secretValue(m manifests, ref *corev1.SecretKeySelector) (string, bool) {
	optional := ref.Optional != nil && *ref.Optional
	if s, ok := m.secrets[ref.Name]; ok {
		if v, ok := s.Data[ref.Key]; ok {
			return string(v), true
		}
		v, ok := s.StringData[ref.Key]
		return v, ok || !optional
	}
	return strings.Repeat("k", gateway.MinJWTSecretBytes), !optional
}

// checkLinks: each caller reaches each callee through the link's own Toxiproxy proxy when the overlay
// puts Toxiproxy in the path, else through the callee's Service.
func checkLinks(t *testing.T, m manifests, throughToxiproxy bool) {
	t.Helper()
	var proxies map[string]proxy
	if throughToxiproxy {
		cm := m.configMaps[configMapOf(t, m, "toxiproxy")]
		if cm == nil {
			t.Fatalf("toxiproxy mounts no rendered ConfigMap")
		}
		proxies = readProxies(t, []byte(cm.Data["proxies.json"]))
		args := m.deployments["toxiproxy"].Spec.Template.Spec.Containers[0].Args
		if i := slices.Index(args, "-config"); i < 0 || i+1 >= len(args) || args[i+1] != "/etc/toxiproxy/proxies.json" {
			t.Errorf("toxiproxy args %q: want -config /etc/toxiproxy/proxies.json", args)
		}
	}
	for _, l := range lab.Links {
		caller := m.deployments[l.Caller]
		if caller == nil {
			t.Fatalf("link %s: no Deployment %s", l.Name, l.Caller)
		}
		name := urlEnv(l.Callee)
		raw, ok := envValue(caller.Spec.Template.Spec.Containers[0], name)
		if !ok {
			t.Errorf("link %s: %s does not set %s (its default is localhost)", l.Name, l.Caller, name)
			continue
		}
		host, port := hostPort(t, name, raw)
		wantHost, wantPort := l.Callee, lab.ServicePorts[l.Callee]
		if throughToxiproxy {
			wantHost, wantPort = "toxiproxy", proxyPort(t, proxies[l.Name])
		}
		if host != wantHost || port != wantPort {
			t.Errorf("link %s: %s=%s, want http://%s:%d", l.Name, name, raw, wantHost, wantPort)
		}
		if !serviceHasPort(m.services[host], port) {
			t.Errorf("link %s: %s=%s, but no Service %s has port %d", l.Name, name, raw, host, port)
		}
	}
	if throughToxiproxy {
		// The callees' Services are what the proxies forward to.
		for _, p := range proxies {
			callee, port, _ := strings.Cut(p.Upstream, ":")
			if !serviceHasPort(m.services[callee], atoi(t, port)) {
				t.Errorf("proxy %s forwards to %s, which no Service serves", p.Name, p.Upstream)
			}
		}
	}
}

// k8sBrokerProblems returns what is wrong with a rendering's wiring to NATS, as brokerProblems does for
// the compose stack: NATS's Service serves its client port; every broker link of the chaos lab
// (scenarios/lab.BrokerLinks) starts at a Deployment whose NATS_URL is that Service or, with Toxiproxy in
// the path, the link's own proxy (enabled, on the link's port, forwarding to NATS, served by the
// toxiproxy Service); no other Deployment sets NATS_URL and no other proxy forwards to NATS; the relay
// observes NATS and every events service; Toxiproxy's readiness waits for the last proxy of its file; and
// the events services' EVENTS_* are compose's when paced, none (the code's defaults) otherwise.
func k8sBrokerProblems(t *testing.T, m manifests, c composeFile, throughToxiproxy, paced bool, links []lab.Link) []string {
	t.Helper()
	var ps []string
	fail := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	brokerPort := lab.ServicePorts[lab.Broker]
	if m.deployments[lab.Broker] == nil || !serviceHasPort(m.services[lab.Broker], brokerPort) {
		fail("no Deployment %s behind a Service with port %d", lab.Broker, brokerPort)
	}
	upstream := fmt.Sprintf("%s:%d", lab.Broker, brokerPort)
	if throughToxiproxy {
		tp := m.deployments["toxiproxy"]
		if tp == nil {
			return append(ps, "no Deployment toxiproxy")
		}
		var list []proxy
		if cm := m.configMaps[configMapOf(t, m, "toxiproxy")]; cm == nil {
			fail("toxiproxy mounts no rendered ConfigMap")
		} else if err := json.Unmarshal([]byte(cm.Data["proxies.json"]), &list); err != nil {
			fail("toxiproxy's proxies.json: %v", err)
		}
		checkBrokerProxies(list, links, upstream, fail)
		tc := tp.Spec.Template.Spec.Containers[0]
		if r := tc.ReadinessProbe; len(list) > 0 && r != nil && r.HTTPGet != nil && r.HTTPGet.Path != "/proxies/"+list[len(list)-1].Name {
			fail("toxiproxy's readiness probe waits for %s, but the last proxy of its file is %s", r.HTTPGet.Path, list[len(list)-1].Name)
		}
		observe := map[string]string{}
		v, _ := envValue(tc, "LAB_OBSERVE")
		for _, pair := range strings.Split(v, ",") {
			name, u, _ := strings.Cut(pair, "=")
			observe[name] = u
		}
		want := map[string]string{lab.Broker: fmt.Sprintf("http://%s:8222", lab.Broker)}
		for _, l := range links {
			want[l.Caller] = fmt.Sprintf("http://%s:%d", l.Caller, lab.ServicePorts[l.Caller])
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if observe[name] != want[name] {
				fail("LAB_OBSERVE has %s=%q, want %s", name, observe[name], want[name])
			}
		}
	}
	callers := map[string]bool{}
	for _, l := range links {
		callers[l.Caller] = true
		host, port := lab.Broker, brokerPort
		if throughToxiproxy {
			host, port = "toxiproxy", l.Port
		}
		d := m.deployments[l.Caller]
		if d == nil {
			fail("broker link %s: no Deployment %s", l.Name, l.Caller)
			continue
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		want := fmt.Sprintf("nats://%s:%d", host, port)
		if got, _ := envValue(ctr, "NATS_URL"); got != want {
			fail("%s: NATS_URL=%q, want %s", l.Caller, got, want)
		} else if !serviceHasPort(m.services[host], port) {
			fail("%s: NATS_URL=%s, but no Service %s has port %d", l.Caller, got, host, port)
		}
		gotPacing, wantPacing, whose := eventsEnv(ctr.Env), map[string]string{}, "none: the code's defaults"
		if paced {
			whose = "compose's"
			if insts := instancesOf(c, l.Caller); len(insts) > 0 {
				for name, v := range c.Services[insts[0]].Environment {
					if strings.HasPrefix(name, "EVENTS_") {
						wantPacing[name] = v
					}
				}
			}
		}
		if !maps.Equal(gotPacing, wantPacing) {
			fail("%s: EVENTS_* %v, want %v (%s)", l.Caller, gotPacing, wantPacing, whose)
		}
	}
	// A Deployment dialling NATS outside every broker link would escape the broker faults.
	for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
		env := m.deployments[name].Spec.Template.Spec.Containers[0].Env
		if !callers[name] && slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "NATS_URL" }) {
			fail("%s sets NATS_URL, but no broker link of the lab starts at %s", name, name)
		}
	}
	return ps
}

// eventsEnv is a container's EVENTS_* settings (events.Config's pacing).
func eventsEnv(env []corev1.EnvVar) map[string]string {
	out := map[string]string{}
	for _, e := range env {
		if strings.HasPrefix(e.Name, "EVENTS_") {
			out[e.Name] = e.Value
		}
	}
	return out
}

// TestK8sBrokerCheckFailsOnBrokenManifests: k8sBrokerProblems reports each way the NATS wiring of a
// rendering can break, so TestK8sKustomizations passing means something.
func TestK8sBrokerCheckFailsOnBrokenManifests(t *testing.T) {
	compose := readCompose(t)
	rendered := map[string]manifests{"base": render(t, "base"), "overlays/chaos": render(t, "overlays/chaos")}
	setEnv := func(m manifests, deployment, name, value string) {
		c := &m.deployments[deployment].Spec.Template.Spec.Containers[0]
		c.Env = append(slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name }), corev1.EnvVar{Name: name, Value: value})
	}
	unsetEnv := func(m manifests, deployment, name string) {
		c := &m.deployments[deployment].Spec.Template.Spec.Containers[0]
		c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	}
	dropServicePort := func(m manifests, service string, port int32) {
		s := m.services[service]
		s.Spec.Ports = slices.DeleteFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port })
	}
	editProxies := func(t *testing.T, m manifests, edit func([]proxy) []proxy) {
		cm := m.configMaps[configMapOf(t, m, "toxiproxy")]
		var list []proxy
		if err := json.Unmarshal([]byte(cm.Data["proxies.json"]), &list); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(edit(list))
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["proxies.json"] = string(data)
	}
	indexOf := func(list []proxy, name string) int {
		return slices.IndexFunc(list, func(p proxy) bool { return p.Name == name })
	}
	cases := []struct {
		name, dir string
		break_    func(t *testing.T, m manifests)
		want      string // a problem k8sBrokerProblems must report; "" for none
	}{
		{"as rendered", "base", func(*testing.T, manifests) {}, ""},
		{"as rendered", "overlays/chaos", func(*testing.T, manifests) {}, ""},
		{"a service dials a proxy that is not there", "base", func(t *testing.T, m manifests) {
			setEnv(m, "catalog", "NATS_URL", "nats://toxiproxy:20007")
		}, `catalog: NATS_URL="nats://toxiproxy:20007", want nats://nats:4222`},
		{"notifications without NATS_URL", "base", func(t *testing.T, m manifests) {
			unsetEnv(m, "notifications", "NATS_URL")
		}, `notifications: NATS_URL="", want nats://nats:4222`},
		{"no notifications", "base", func(t *testing.T, m manifests) {
			delete(m.deployments, "notifications")
		}, "broker link notifications-nats: no Deployment notifications"},
		{"NATS's Service without its client port", "base", func(t *testing.T, m manifests) {
			dropServicePort(m, "nats", 4222)
		}, "no Deployment nats behind a Service with port 4222"},
		{"paced in the base", "base", func(t *testing.T, m manifests) {
			setEnv(m, "orders", "EVENTS_ACK_WAIT", "5s")
		}, "orders: EVENTS_* map[EVENTS_ACK_WAIT:5s], want map[] (none: the code's defaults)"},
		{"a service dials NATS directly", "overlays/chaos", func(t *testing.T, m manifests) {
			setEnv(m, "orders", "NATS_URL", "nats://nats:4222")
		}, `orders: NATS_URL="nats://nats:4222", want nats://toxiproxy:20006`},
		{"a service uses another's proxy", "overlays/chaos", func(t *testing.T, m manifests) {
			setEnv(m, "payments", "NATS_URL", "nats://toxiproxy:20007")
		}, `payments: NATS_URL="nats://toxiproxy:20007", want nats://toxiproxy:20008`},
		{"a proxy's port not on the toxiproxy Service", "overlays/chaos", func(t *testing.T, m manifests) {
			dropServicePort(m, "toxiproxy", 20009)
		}, "notifications: NATS_URL=nats://toxiproxy:20009, but no Service toxiproxy has port 20009"},
		{"a missing proxy", "overlays/chaos", func(t *testing.T, m manifests) {
			editProxies(t, m, func(l []proxy) []proxy {
				return slices.Delete(l, indexOf(l, "payments-nats"), indexOf(l, "payments-nats")+1)
			})
		}, "broker link payments-nats has no proxy"},
		{"a proxy to the monitoring port", "overlays/chaos", func(t *testing.T, m manifests) {
			editProxies(t, m, func(l []proxy) []proxy { l[indexOf(l, "orders-nats")].Upstream = "nats:8222"; return l })
		}, "proxy orders-nats forwards to nats:8222, want nats:4222"},
		{"a stray proxy to NATS", "overlays/chaos", func(t *testing.T, m manifests) {
			editProxies(t, m, func(l []proxy) []proxy {
				return slices.Insert(l, 0, proxy{Name: "gateway-nats", Listen: "0.0.0.0:20099", Upstream: "nats:4222", Enabled: true})
			})
		}, "proxy gateway-nats forwards to NATS but is no broker link"},
		{"a broker proxy appended last", "overlays/chaos", func(t *testing.T, m manifests) {
			editProxies(t, m, func(l []proxy) []proxy {
				i := indexOf(l, "notifications-nats")
				return append(slices.Delete(slices.Clone(l), i, i+1), l[i])
			})
		}, "toxiproxy's readiness probe waits for /proxies/orders-payments, but the last proxy of its file is notifications-nats"},
		{"the gateway dials NATS", "overlays/chaos", func(t *testing.T, m manifests) {
			setEnv(m, "gateway", "NATS_URL", "nats://nats:4222")
		}, "gateway sets NATS_URL, but no broker link of the lab starts at gateway"},
		{"NATS not observable", "overlays/chaos", func(t *testing.T, m manifests) {
			v, _ := envValue(m.deployments["toxiproxy"].Spec.Template.Spec.Containers[0], "LAB_OBSERVE")
			setEnv(m, "toxiproxy", "LAB_OBSERVE", strings.Replace(v, ",nats=http://nats:8222", "", 1))
		}, `LAB_OBSERVE has nats="", want http://nats:8222`},
		{"pacing lost", "overlays/chaos", func(t *testing.T, m manifests) {
			unsetEnv(m, "catalog", "EVENTS_ACK_WAIT")
		}, "catalog: EVENTS_* map[EVENTS_MAX_BACKOFF:1s], want map[EVENTS_ACK_WAIT:5s EVENTS_MAX_BACKOFF:1s] (compose's)"},
	}
	for _, tc := range cases {
		t.Run(tc.dir+"/"+tc.name, func(t *testing.T) {
			m := cloneManifests(rendered[tc.dir])
			tc.break_(t, m)
			want := kustomizations[tc.dir]
			checkProblems(t, k8sBrokerProblems(t, m, compose, want.toxiproxy, want.pacedEvents, lab.BrokerLinks), tc.want)
		})
	}
	// The lab without notifications' broker link: the cluster's notifications dials NATS outside any
	// link, so a broker fault would miss it.
	links := slices.DeleteFunc(slices.Clone(lab.BrokerLinks), func(l lab.Link) bool { return l.Caller == "notifications" })
	checkProblems(t, k8sBrokerProblems(t, rendered["overlays/chaos"], compose, true, true, links),
		"notifications sets NATS_URL, but no broker link of the lab starts at notifications")
}

// cloneManifests copies what the broken-manifest cases edit (Deployments, Services, ConfigMaps).
func cloneManifests(m manifests) manifests {
	c := m
	c.deployments, c.services, c.configMaps = map[string]*appsv1.Deployment{}, map[string]*corev1.Service{}, map[string]*corev1.ConfigMap{}
	for k, v := range m.deployments {
		c.deployments[k] = v.DeepCopy()
	}
	for k, v := range m.services {
		c.services[k] = v.DeepCopy()
	}
	for k, v := range m.configMaps {
		c.configMaps[k] = v.DeepCopy()
	}
	return c
}

// checkJWTSecret: the gateway reads its HS256 key from a Secret, rendered (from a dev literal) only in the
// dev overlays.
func checkJWTSecret(t *testing.T, m manifests, devTokens, jwtInGit bool) {
	t.Helper()
	c := m.deployments["gateway"].Spec.Template.Spec.Containers[0]
	if v, _ := envValue(c, "GATEWAY_DEV_TOKENS"); v != fmt.Sprint(devTokens) {
		t.Errorf("GATEWAY_DEV_TOKENS=%q, want %v", v, devTokens)
	}
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "GATEWAY_JWT_SECRET" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil {
		t.Fatalf("the gateway must read GATEWAY_JWT_SECRET from a Secret (secretKeyRef)")
	}
	s, rendered := m.secrets[ref.Name]
	if rendered != jwtInGit {
		t.Fatalf("Secret %s rendered: %v, want %v (only dev overlays carry a key in git)", ref.Name, rendered, jwtInGit)
	}
	if len(m.secrets) > 1 || (!jwtInGit && len(m.secrets) > 0) {
		t.Errorf("renders Secrets %v: the gateway's dev key is the only secret value in git", slices.Collect(maps.Keys(m.secrets)))
	}
	if !rendered {
		return
	}
	key := string(s.Data[ref.Key])
	if len(key) < gateway.MinJWTSecretBytes {
		t.Errorf("Secret %s key %s: %d bytes, want at least %d", ref.Name, ref.Key, len(key), gateway.MinJWTSecretBytes)
	}
	if !strings.Contains(key, "dev-only") {
		t.Errorf("the key in git must say it is dev-only, got %q", key)
	}
}

func configMapOf(t *testing.T, m manifests, deployment string) string {
	t.Helper()
	for _, v := range m.deployments[deployment].Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func serviceHasPort(s *corev1.Service, port int) bool {
	if s == nil {
		return false
	}
	return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port })
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
