package deploycheck

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestKubernetesManifests decodes every document strictly (an unknown or
// misspelt field is an error) into k8s.io/api types and checks each role:
// a workload serving it, non-root with a read-only root filesystem and no
// capabilities, readiness and liveness through the gRPC health probe on the
// plaintext health port (--health-addr; the gRPC port has TLS),
// a grace period above hexride's drain, a Service; matching (and the
// gateways) have a PodDisruptionBudget.
func TestKubernetesManifests(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "infra/deploy/kubernetes/hexride.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type workload struct {
		kind     string
		template corev1.PodTemplateSpec
	}
	workloads := map[string]workload{}
	services := map[string]*corev1.Service{}
	var pdbs []*policyv1.PodDisruptionBudget
	var env map[string]string
	for i, doc := range strings.Split(string(data), "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		strict := func(v any) {
			if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
				t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
			}
		}
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			strict(&corev1.Namespace{})
		case "v1 ConfigMap":
			var cm corev1.ConfigMap
			strict(&cm)
			env = cm.Data
		case "apps/v1 Deployment":
			var d appsv1.Deployment
			strict(&d)
			workloads[d.Spec.Template.Labels["app.kubernetes.io/component"]] = workload{"Deployment", d.Spec.Template}
		case "apps/v1 StatefulSet":
			var s appsv1.StatefulSet
			strict(&s)
			workloads[s.Spec.Template.Labels["app.kubernetes.io/component"]] = workload{"StatefulSet", s.Spec.Template}
		case "v1 Service":
			var s corev1.Service
			strict(&s)
			services[s.Spec.Selector["app.kubernetes.io/component"]] = &s
		case "policy/v1 PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			strict(&p)
			pdbs = append(pdbs, &p)
		default:
			t.Fatalf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
	}
	drain, err1 := time.ParseDuration(env["HEXRIDE_DRAIN_WAIT"])
	stop, err2 := time.ParseDuration(env["HEXRIDE_STOP_TIMEOUT"])
	if err1 != nil || err2 != nil {
		t.Fatalf("ConfigMap hexride-env: HEXRIDE_DRAIN_WAIT %q, HEXRIDE_STOP_TIMEOUT %q", env["HEXRIDE_DRAIN_WAIT"], env["HEXRIDE_STOP_TIMEOUT"])
	}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			w, ok := workloads[role]
			if !ok {
				t.Fatal("no workload")
			}
			pod := w.template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]
			service := role
			if role == "console" {
				service = "rider"
			}
			if !slices.Equal(c.Args[:3], []string{"serve", "--services", service}) {
				t.Errorf("args %q do not serve %s", c.Args, service)
			}
			psc, sc := pod.SecurityContext, c.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("pod must run as a non-root numeric user")
			}
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Error("container needs readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
			}
			grpcPort, healthPort := int32(0), int32(0)
			for _, p := range c.Ports {
				switch p.Name {
				case "grpc":
					grpcPort = p.ContainerPort
				case "health":
					healthPort = p.ContainerPort
				}
			}
			// The kubelet's gRPC probe speaks plaintext: with TLS on the
			// gRPC port it must probe the plaintext health-only port
			// (--health-addr).
			if grpcPort == 0 || healthPort == 0 || healthPort == grpcPort {
				t.Fatalf("ports grpc %d, health %d: want both, distinct", grpcPort, healthPort)
			}
			healthAddr := env["HEXRIDE_HEALTH_ADDR"]
			for _, e := range c.Env {
				if e.Name == "HEXRIDE_HEALTH_ADDR" {
					healthAddr = e.Value
				}
			}
			if _, port, err := net.SplitHostPort(healthAddr); err != nil || port != strconv.Itoa(int(healthPort)) {
				t.Errorf("HEXRIDE_HEALTH_ADDR %q does not listen on the health port %d", healthAddr, healthPort)
			}
			for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil || p.GRPC == nil || p.GRPC.Port != healthPort {
					t.Errorf("%s must be the gRPC health probe on the health port %d", kind, healthPort)
				}
			}
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			if pod.TerminationGracePeriodSeconds == nil || grace <= drain+stop+5*time.Second {
				t.Errorf("terminationGracePeriodSeconds %v: want above drain-wait+stop-timeout+5s = %v", grace, drain+stop+5*time.Second)
			}
			if pre := c.Lifecycle; pre != nil && pre.PreStop != nil {
				if pre.PreStop.Sleep == nil || time.Duration(pre.PreStop.Sleep.Seconds)*time.Second > drain {
					t.Errorf("preStop: only a sleep no longer than --drain-wait (the image has no shell)")
				}
			}
			if services[role] == nil {
				t.Error("no Service selects it")
			}
		})
	}
	for _, role := range []string{"matching"} {
		found := false
		for _, p := range pdbs {
			if p.Spec.Selector.MatchLabels["app.kubernetes.io/component"] == role {
				found = true
			}
		}
		if !found {
			t.Errorf("no PodDisruptionBudget for %s", role)
		}
	}
}
