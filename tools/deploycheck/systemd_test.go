package deploycheck

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnits: every role has a unit that systemd-analyze verify
// accepts without a single warning (an unknown or misspelt key is only a
// warning to systemd, so any output fails), hardened, reading its flags
// from environment files, stopping with SIGTERM and waiting longer than
// hexride's drain.
func TestSystemdUnits(t *testing.T) {
	dir := filepath.Join(repoRoot, "infra/deploy/systemd")
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd; .ci/run installs it)")
	}
	// verify wants ExecStart's binary to exist: point the copies at a
	// stand-in.
	tmp := t.TempDir()
	fake := filepath.Join(tmp, "hexride")
	if err := os.WriteFile(fake, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			name := "hexride-" + role + ".service"
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			keys := unitKeys(string(data))
			want := map[string]string{
				"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
				"DynamicUser": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
				"KillSignal": "SIGTERM", "ProtectHome": "yes", "RestrictSUIDSGID": "yes",
			}
			for k, v := range want {
				got, ok := keys[k]
				if !ok || got[len(got)-1] != v {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			if !strings.Contains(strings.Join(keys["EnvironmentFile"], " "), "/etc/hexride/") {
				t.Errorf("no EnvironmentFile under /etc/hexride: %q", keys["EnvironmentFile"])
			}
			exec := strings.Join(keys["ExecStart"], " ")
			service := role
			if role == "console" {
				service = "rider"
			}
			if !strings.Contains(exec, "hexride serve --services "+service) {
				t.Errorf("ExecStart %q does not serve %s", exec, service)
			}
			// hexride's defaults: --drain-wait 3s, --stop-timeout 10s, then 5s.
			if ts := keys["TimeoutStopSec"]; len(ts) == 0 {
				t.Error("no TimeoutStopSec")
			} else if d, err := time.ParseDuration(ts[0]); err != nil || d <= 18*time.Second {
				t.Errorf("TimeoutStopSec=%s: want more than drain-wait+stop-timeout+5s = 18s (%v)", ts[0], err)
			}
			copyPath := filepath.Join(tmp, name)
			if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/hexride", fake)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec_(analyze, "verify", "--man=no", copyPath)
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
		})
	}
}

func exec_(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// unitKeys maps each key of a unit file to its values in order.
func unitKeys(unit string) map[string][]string {
	keys := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}
