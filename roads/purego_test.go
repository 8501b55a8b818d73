package roads

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPureGo: the roads package links no cgo, even with cgo enabled (the
// repository enables it for H3). Its tests may: the osmpbf cross-check
// links github.com/datadog/czlib.
func TestPureGo(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("roads links cgo through: %s", strings.ReplaceAll(s, "\n", ", "))
	}
}
