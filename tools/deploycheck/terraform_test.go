package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// tfFiles parses every .tf file under dir (recursively).
func tfFiles(t *testing.T, dir string) map[string]*hclsyntax.Body {
	t.Helper()
	p := hclparse.NewParser()
	out := map[string]*hclsyntax.Body{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return err
		}
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", path, diags)
		}
		out[path] = f.Body.(*hclsyntax.Body)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// local evaluates a literal local value named name in body.
func local(t *testing.T, files map[string]*hclsyntax.Body, name string) (cty.Value, string) {
	t.Helper()
	for path, body := range files {
		for _, b := range body.Blocks {
			if b.Type != "locals" {
				continue
			}
			if a, ok := b.Body.Attributes[name]; ok {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					t.Fatalf("%s: local.%s must be literal: %v", path, name, diags)
				}
				return v, path
			}
		}
	}
	t.Fatalf("no local.%s", name)
	return cty.NilVal, ""
}

var secretName = regexp.MustCompile(`(?i)password|token|key|secret`)

// TestTerraform parses terraform/ with hclparse and checks the deployment:
// three regions in the one region map, an odd Consul quorum per region,
// every hexride role with a health check, no secret with a default, and
// every region-shaped thing derived from the region map.
func TestTerraform(t *testing.T) {
	root := filepath.Join(repoRoot, "terraform")
	files := tfFiles(t, root)

	regions, _ := local(t, files, "regions")
	var names []string
	for it := regions.ElementIterator(); it.Next(); {
		k, r := it.Element()
		names = append(names, k.AsString())
		n, _ := r.GetAttr("consul_servers").AsBigFloat().Int64()
		if n%2 != 1 || n < 3 {
			t.Errorf("region %s: %d Consul servers, want an odd number ≥ 3", k.AsString(), n)
		}
		if nb := r.GetAttr("neighbour").AsString(); !regions.Type().HasAttribute(nb) || nb == k.AsString() {
			t.Errorf("region %s: neighbour %q is not another region of the map", k.AsString(), nb)
		}
	}
	sort.Strings(names)
	if len(names) != 3 {
		t.Errorf("regions %q: want three", names)
	}

	// The region module is instantiated once per entry of the map, and the
	// CockroachDB cluster spans exactly the map's regions.
	var moduleForEach, crdbRegions string
	for _, body := range files {
		for _, b := range body.Blocks {
			if b.Type == "module" && len(b.Labels) == 1 && b.Labels[0] == "region" {
				moduleForEach = exprText(t, b.Body.Attributes["for_each"])
			}
			if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[1] == "cockroachdb" {
				obj, ok := b.Body.Attributes["input"].Expr.(*hclsyntax.ObjectConsExpr)
				if !ok {
					t.Fatal("cockroachdb input is not an object")
				}
				for _, item := range obj.Items {
					if key, _ := item.KeyExpr.Value(nil); key.Type() == cty.String && key.AsString() == "regions" {
						crdbRegions = string(item.ValueExpr.Range().SliceBytes(src(t, b.Body.SrcRange.Filename)))
					}
				}
			}
		}
	}
	if moduleForEach != "local.regions" {
		t.Errorf(`module "region" for_each = %q, want local.regions (the region map)`, moduleForEach)
	}
	if crdbRegions != "keys(local.regions)" {
		t.Errorf("cockroachdb regions = %q, want keys(local.regions)", crdbRegions)
	}
	// No second list of region names: outside the root main.tf (the map)
	// a region is named only as primary_region's default.
	for path := range files {
		if filepath.Base(path) == "main.tf" && filepath.Dir(path) == root || filepath.Base(path) == "variables.tf" && filepath.Dir(path) == root {
			continue
		}
		for _, n := range names {
			if strings.Contains(string(src(t, path)), `"`+n+`"`) {
				t.Errorf("%s names region %q outside the region map", path, n)
			}
		}
	}

	// Consul quorum in the module: odd by validation, odd by default.
	modFiles := tfFiles(t, filepath.Join(root, "modules/region"))
	roleMap, _ := local(t, modFiles, "roles")
	for _, role := range roles {
		if !roleMap.Type().HasAttribute(role) {
			t.Errorf("role %s missing from the region module", role)
			continue
		}
		hc := roleMap.GetAttr(role)
		if !hc.Type().HasAttribute("health_check") || hc.GetAttr("health_check").IsNull() {
			t.Errorf("role %s has no health_check", role)
			continue
		}
		if !hc.GetAttr("health_check").Type().HasAttribute("grpc") {
			t.Errorf("role %s: health check is not gRPC", role)
		}
	}

	// Secrets: no default anywhere; consul_servers validated odd.
	for path, body := range files {
		for _, b := range body.Blocks {
			if b.Type != "variable" || len(b.Labels) != 1 {
				continue
			}
			name := b.Labels[0]
			_, hasDefault := b.Body.Attributes["default"]
			if secretName.MatchString(name) && hasDefault {
				t.Errorf("%s: variable %q looks secret but has a default", path, name)
			}
			if secretName.MatchString(name) && !isTrue(b.Body.Attributes["sensitive"]) {
				t.Errorf("%s: variable %q looks secret but is not sensitive", path, name)
			}
			if name == "consul_servers" {
				if def, ok := b.Body.Attributes["default"]; ok {
					v, _ := def.Expr.Value(nil)
					n, _ := v.AsBigFloat().Int64()
					if n%2 != 1 {
						t.Errorf("%s: consul_servers default %d is even", path, n)
					}
				}
				valid := false
				for _, vb := range b.Body.Blocks {
					if vb.Type == "validation" && strings.Contains(exprText(t, vb.Body.Attributes["condition"]), "% 2 == 1") {
						valid = true
					}
				}
				if !valid {
					t.Errorf("%s: consul_servers has no odd-count validation", path)
				}
			}
		}
	}
}

func isTrue(a *hclsyntax.Attribute) bool {
	if a == nil {
		return false
	}
	v, diags := a.Expr.Value(nil)
	return !diags.HasErrors() && v.Type() == cty.Bool && v.True()
}

var srcCache = map[string][]byte{}

func src(t *testing.T, path string) []byte {
	if b, ok := srcCache[path]; ok {
		return b
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srcCache[path] = b
	return b
}

func exprText(t *testing.T, a *hclsyntax.Attribute) string {
	if a == nil {
		return ""
	}
	r := a.Expr.Range()
	return string(r.SliceBytes(src(t, r.Filename)))
}

// TestTerraformRegionMapFile: the region map every hexride process gets
// (terraform/region-map.json, passed to the region module) names exactly
// the Terraform regions, each falling back to its Terraform neighbour,
// with var.primary_region's default as primary. (The hexride module's
// tests check the file parses as a --region-map.)
func TestTerraformRegionMapFile(t *testing.T) {
	root := filepath.Join(repoRoot, "terraform")
	files := tfFiles(t, root)
	regions, _ := local(t, files, "regions")
	var m struct {
		Primary string `json:"primary"`
		Regions []struct {
			Name     string   `json:"name"`
			Fallback string   `json:"fallback"`
			Cells    []string `json:"cells"`
		} `json:"regions"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "region-map.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	tf := map[string]string{}
	for it := regions.ElementIterator(); it.Next(); {
		k, r := it.Element()
		tf[k.AsString()] = r.GetAttr("neighbour").AsString()
	}
	got := map[string]string{}
	for _, r := range m.Regions {
		got[r.Name] = r.Fallback
		if len(r.Cells) == 0 {
			t.Errorf("region-map.json: region %s homes no cells", r.Name)
		}
	}
	if len(got) != len(tf) {
		t.Errorf("region-map.json regions %v, Terraform regions %v", got, tf)
	}
	for name, nb := range tf {
		if fb, ok := got[name]; !ok || fb != nb {
			t.Errorf("region %s: region-map.json fallback %q, Terraform neighbour %q", name, fb, nb)
		}
	}
	var primary string
	var passed bool
	for path, body := range files {
		for _, b := range body.Blocks {
			if b.Type == "variable" && len(b.Labels) == 1 && b.Labels[0] == "primary_region" {
				if def, ok := b.Body.Attributes["default"]; ok {
					v, _ := def.Expr.Value(nil)
					primary = v.AsString()
				}
			}
			if b.Type == "module" && len(b.Labels) == 1 && b.Labels[0] == "region" {
				if a, ok := b.Body.Attributes["region_map"]; ok && strings.Contains(string(a.Expr.Range().SliceBytes(src(t, path))), "region-map.json") {
					passed = true
				}
			}
		}
	}
	if m.Primary != primary {
		t.Errorf("region-map.json primary %q, var.primary_region default %q", m.Primary, primary)
	}
	if !passed {
		t.Error(`module "region" is not given region-map.json as region_map`)
	}
}
