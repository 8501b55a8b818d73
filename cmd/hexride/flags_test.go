package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/node"
)

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	consul := fs.String("consul", "", "")
	addr := fs.String("addr", "a", "")
	res := fs.Int("partition-res", 6, "")
	if err := fs.Parse([]string{"--addr", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HEXRIDE_CONSUL": "127.0.0.1:8500", "HEXRIDE_ADDR": "from-env", "HEXRIDE_PARTITION_RES": "5"}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *consul != "127.0.0.1:8500" || *addr != "from-flag" || *res != 5 {
		t.Fatalf("consul %q addr %q res %d: env must fill unset flags only", *consul, *addr, *res)
	}
	env["HEXRIDE_PARTITION_RES"] = "six"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int("partition-res", 6, "")
	if err := applyEnv(fs2, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "HEXRIDE_PARTITION_RES") {
		t.Fatalf("bad env value: %v", err)
	}
}

// TestServeRejectsBadConfig: serve validates its configuration before it
// starts anything and says what is wrong.
func TestServeRejectsBadConfig(t *testing.T) {
	maps := writeRegionMaps(t)
	tests := []struct {
		name string
		args []string
		want error
		text string
	}{
		{"unknown service", []string{"--services", "billing"}, node.ErrUnknownService, "billing"},
		{"no authentication", []string{"--services", "trip"}, node.ErrNoAuth, "JWKS"},
		{"tls without its key", []string{"--services", "trip", "--jwks-file", "k", "--jwt-issuer", "i", "--jwt-audience", "a", "--service-key-dir", "d", "--tls-cert", "c.pem", "--tls-ca", "ca.pem"}, node.ErrPartialTLS, "TLS"},
		{"rider without discovery", []string{"--services", "rider", "--quote-key", strings.Repeat("ab", 32)}, node.ErrNeedsDiscovery, "rider calls"},
		{"short quote key", []string{"--quote-key", "abcd"}, node.ErrShortQuoteKey, "quote key"},
		{"bad quote key hex", []string{"--quote-key", "zz"}, nil, "--quote-key"},
		{"wildcard without advertise", []string{"--services", "trip", "--addr", "0.0.0.0:7070"}, node.ErrBadAddr, "--advertise"},
		{"health address without a port", []string{"--services", "trip", "--health-addr", "7071"}, node.ErrBadAddr, "--health-addr"},
		{"nats not a nats URL", []string{"--services", "trip", "--nats", "http://127.0.0.1:4222"}, node.ErrBadNATS, "--nats"},
		{"nats without a port", []string{"--services", "trip", "--nats", "nats://127.0.0.1"}, node.ErrBadNATS, "--nats"},
		{"unknown dispatch mode", []string{"--services", "trip", "--dispatch-mode", "auction"}, matching.ErrBadMode, "--dispatch-mode"},
		{"batch window too short", []string{"--services", "trip", "--batch-window", "500ms"}, matching.ErrBadWindow, "--batch-window"},
		{"batch window too long", []string{"--services", "trip", "--dispatch-mode", "batched", "--batch-window", "4s"}, matching.ErrBadWindow, "--batch-window"},
		{"batch hold without a longest hold", []string{"--services", "trip", "--batch-hold-pickup", "2m"}, matching.ErrBadHoldMax, "--batch-hold-max"},
		{"batch hold too long", []string{"--services", "trip", "--batch-hold-pickup", "2m", "--batch-hold-max", "11s"}, matching.ErrBadHoldMax, "--batch-hold-max"},
		{"batch hold shorter than two windows", []string{"--services", "trip", "--batch-hold-pickup", "2m", "--batch-hold-max", "3s"}, matching.ErrBadHoldMax, "--batch-hold-max"},
		{"batch hold negative pickup", []string{"--services", "trip", "--batch-hold-pickup", "-1s", "--batch-hold-max", "6s"}, matching.ErrBadHoldPickup, "--batch-hold-pickup"},
		{"batch hold without a pickup", []string{"--services", "trip", "--batch-hold-max", "6s"}, matching.ErrBadHoldPickup, "--batch-hold-pickup"},
		{"batch long pickup too short", []string{"--services", "trip", "--batch-long-pickup", "5s"}, matching.ErrBadLongPickup, "--batch-long-pickup"},
		{"batch long pickup too long", []string{"--services", "trip", "--batch-long-pickup", "2h"}, matching.ErrBadLongPickup, "--batch-long-pickup"},
		{"batch long pickup negative", []string{"--services", "trip", "--batch-long-pickup", "-1m"}, matching.ErrBadLongPickup, "--batch-long-pickup"},
		{"chain horizon too long", []string{"--services", "trip", "--chain-within", "6m"}, matching.ErrBadChainWithin, "--chain-within"},
		{"chain horizon negative", []string{"--services", "trip", "--chain-within", "-1s"}, matching.ErrBadChainWithin, "--chain-within"},
		{"bad log level", []string{"--services", "trip", "--log-level", "loud"}, nil, "log level"},
		{"region not in the region map", []string{"--services", "trip", "--region-map", maps.good}, node.ErrBadRegion, `--region="local" is not a region of --region-map (its regions: eu-west, us-east)`},
		{"region map with bad JSON", []string{"--services", "trip", "--region", "us-east", "--region-map", maps.badJSON}, dispatch.ErrInvalidRegionMap, "--region-map"},
		{"region map with unknown fallback", []string{"--services", "trip", "--region", "us-east", "--region-map", maps.badFallback}, dispatch.ErrInvalidRegionMap, `falls back to unknown region "nowhere"`},
		{"region map cells finer than partitions", []string{"--services", "trip", "--region", "us-east", "--partition-res", "2", "--region-map", maps.good}, dispatch.ErrInvalidRegionMap, "finer than the partition resolution 2"},
		{"region map missing", []string{"--services", "trip", "--region", "us-east", "--region-map", maps.good + ".missing"}, dispatch.ErrInvalidRegionMap, "--region-map"},
		{"bad region name without a map", []string{"--services", "trip", "--region", "us.east"}, node.ErrBadRegion, "--region"},
		// A region of the map passes the region checks: what fails next is
		// authentication.
		{"region in the region map", []string{"--services", "trip", "--region", "eu-west", "--region-map", maps.good}, node.ErrNoAuth, "JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := serveCmd(context.Background(), tt.args, &out, &errOut)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
}

type regionMapFiles struct{ good, badJSON, badFallback string }

// writeRegionMaps writes region map files for the flag tests: good has
// us-east (primary, a res-3 cell around Wilmington) and eu-west.
func writeRegionMaps(t *testing.T) regionMapFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return regionMapFiles{
		good:        write("good.json", `{"primary":"us-east","regions":[{"name":"us-east","fallback":"eu-west","cells":["832aacfffffffff"]},{"name":"eu-west","fallback":"us-east"}]}`),
		badJSON:     write("bad.json", `{"primary":"us-east",`),
		badFallback: write("fallback.json", `{"primary":"us-east","regions":[{"name":"us-east","fallback":"nowhere"}]}`),
	}
}

// TestRegionMapFromEnv: HEXRIDE_REGION_MAP sets --region-map like any flag.
func TestRegionMapFromEnv(t *testing.T) {
	maps := writeRegionMaps(t)
	t.Setenv("HEXRIDE_REGION_MAP", maps.good)
	var out, errOut bytes.Buffer
	err := serveCmd(context.Background(), []string{"--services", "trip", "--region", "asia"}, &out, &errOut)
	if !errors.Is(err, node.ErrBadRegion) || !strings.Contains(err.Error(), "--region-map") {
		t.Fatalf("err = %v, want ErrBadRegion naming --region-map", err)
	}
}

// TestHealthAddrFromEnv: HEXRIDE_HEALTH_ADDR sets --health-addr like any
// flag, and is validated the same.
func TestHealthAddrFromEnv(t *testing.T) {
	t.Setenv("HEXRIDE_HEALTH_ADDR", "127.0.0.1")
	var out, errOut bytes.Buffer
	err := serveCmd(context.Background(), []string{"--services", "trip"}, &out, &errOut)
	if !errors.Is(err, node.ErrBadAddr) || !strings.Contains(err.Error(), "--health-addr") {
		t.Fatalf("err = %v, want ErrBadAddr naming --health-addr", err)
	}
}

// TestDevRejectsBadDispatch: dev takes --dispatch-mode and --batch-window
// too and refuses bad values, naming the flag, before it starts anything.
func TestDevRejectsBadDispatch(t *testing.T) {
	maps := writeRegionMaps(t)
	tests := []struct {
		args []string
		want error
		text string
	}{
		{[]string{"--dispatch-mode", "auction"}, matching.ErrBadMode, "--dispatch-mode"},
		{[]string{"--dispatch-mode", "batched", "--batch-window", "10s"}, matching.ErrBadWindow, "--batch-window"},
		{[]string{"--region-map", maps.good}, node.ErrBadRegion, `--region="local" is not a region of --region-map`},
		{[]string{"--region", "us-east", "--region-map", maps.badFallback}, dispatch.ErrInvalidRegionMap, "--region-map"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			var out, errOut bytes.Buffer
			err := devCmd(context.Background(), append([]string{"--http", "", "--key-dir", dir}, tt.args...), &out, &errOut)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
}

// TestDeployReadmeRegionMap: the example region map in
// infra/deploy/README.md is one serve accepts.
func TestDeployReadmeRegionMap(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "infra", "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## The region map")
	if !ok {
		t.Fatal("infra/deploy/README.md has no region map section")
	}
	_, rest, ok = strings.Cut(rest, "```json\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("the region map section has no ```json block")
	}
	path := filepath.Join(t.TempDir(), "map.json")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.Region = "us-west"
	if err := loadRegionMap(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateRegions(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    geo.LatLng
		want string
	}{
		{"new york", geo.LatLng{Lat: 40.71, Lng: -74.0}, "us-east"},
		{"chicago", geo.LatLng{Lat: 41.88, Lng: -87.63}, "us-central"},
		{"denver", geo.LatLng{Lat: 39.74, Lng: -104.99}, "us-central"},
		{"san francisco", geo.LatLng{Lat: 37.77, Lng: -122.42}, "us-west"},
		{"london, unmapped", geo.LatLng{Lat: 51.5, Lng: -0.12}, "us-east"},
	} {
		if got, err := cfg.Regions.RegionOf(tc.p); err != nil || got != tc.want {
			t.Errorf("%s: RegionOf = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestMigrateRejectsBadRegionMap: migrate checks --region-map before it
// connects to the database.
func TestMigrateRejectsBadRegionMap(t *testing.T) {
	maps := writeRegionMaps(t)
	var out, errOut bytes.Buffer
	err := migrateCmd(context.Background(), []string{"--db", "postgres://nobody@127.0.0.1:1/none", "--region-map", maps.badFallback}, &out, &errOut)
	if !errors.Is(err, dispatch.ErrInvalidRegionMap) || !strings.Contains(err.Error(), "--region-map") {
		t.Fatalf("err = %v, want ErrInvalidRegionMap naming --region-map", err)
	}
}

// TestMigrateRejectsBadSurvivalGoal: the survival goal is an explicit
// choice; a value that is not one is refused before any connection.
func TestMigrateRejectsBadSurvivalGoal(t *testing.T) {
	var out, errOut bytes.Buffer
	err := migrateCmd(context.Background(), []string{"--db", "postgres://nobody@127.0.0.1:1/none", "--survive", "planet"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--survive") {
		t.Fatalf("err = %v, want one naming --survive", err)
	}
}

// TestTerraformRegionMap: the region map Terraform gives every process
// (terraform/region-map.json; tools/deploycheck checks it against the
// Terraform regions) is the README's example, and serve accepts it.
func TestTerraformRegionMap(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "infra", "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "## The region map")
	_, rest, _ = strings.Cut(rest, "```json\n")
	block, _, _ := strings.Cut(rest, "```")
	tf, err := os.ReadFile(filepath.Join("..", "..", "terraform", "region-map.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(tf)) != strings.TrimSpace(block) {
		t.Errorf("terraform/region-map.json differs from the example in infra/deploy/README.md")
	}
	for _, region := range []string{"us-east", "us-central", "us-west"} {
		cfg := node.DefaultConfig()
		cfg.Region = region
		if err := loadRegionMap(filepath.Join("..", "..", "terraform", "region-map.json"), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.ValidateRegions(); err != nil {
			t.Fatalf("--region %s: %v", region, err)
		}
	}
}

// TestDeployEnvironmentNamesFlags: every HEXRIDE_* variable the deployment
// files set (Terraform, Kubernetes, systemd) is one hexride serve reads, so
// a misspelt or renamed variable cannot configure nothing in silence.
func TestDeployEnvironmentNamesFlags(t *testing.T) {
	var help bytes.Buffer
	if err := serveCmd(context.Background(), []string{"--help"}, &help, &help); err != nil && !errors.Is(err, errHelp) {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env (HEXRIDE_[A-Z0-9_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("serve --help lists %d variables: %s", len(known), help.String())
	}
	envVar := regexp.MustCompile(`\bHEXRIDE_[A-Z0-9_]+\b`)
	root := filepath.Join("..", "..")
	seen := 0
	for _, dir := range []string{"terraform", filepath.Join("infra", "deploy", "kubernetes"), filepath.Join("infra", "deploy", "systemd")} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".md") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, v := range envVar.FindAllString(string(src), -1) {
				seen++
				if !known[v] {
					t.Errorf("%s sets %s, which hexride serve does not read", path, v)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen == 0 {
		t.Fatal("no HEXRIDE_ variable found in the deployment files")
	}
}
