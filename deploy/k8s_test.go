package deploy_test

import (
	"bufio"
	"bytes"
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
	toxiproxy bool // every link through its Toxiproxy proxy
}{
	"base":           {},
	"overlays/dev":   {namespace: "reslab-dev", devTokens: true, jwtInGit: true},
	"overlays/chaos": {namespace: "reslab-chaos", devTokens: true, jwtInGit: true, toxiproxy: true},
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
			env[e.Name] = secretValue(m, e.ValueFrom.SecretKeyRef)
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
// git), a stand-in of the key's minimum length.
func secretValue(m manifests, ref *corev1.SecretKeySelector) string {
	if s, ok := m.secrets[ref.Name]; ok {
		if v, ok := s.Data[ref.Key]; ok {
			return string(v)
		}
		return s.StringData[ref.Key]
	}
	return strings.Repeat("k", gateway.MinJWTSecretBytes)
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
