package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hexride/hexride/roads"
)

func delawarePBF(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/paulmach/osm").Output()
	if err != nil {
		t.Fatalf("go list github.com/paulmach/osm: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "testdata", "delaware-latest.osm.pbf")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoadsBuild runs `hexride roads build` on a small box of downtown
// Wilmington from the Delaware extract, loads the file and routes on it;
// then checks the errors for bad input name the flag.
func TestRoadsBuild(t *testing.T) {
	bin := hexrideBinary(t)
	pbf := delawarePBF(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "downtown.roads")
	cmd := exec.Command(bin, "roads", "build", "--osm", pbf, "--out", out, "--bbox", "39.735,-75.565,39.755,-75.535")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("roads build: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "contracted") || !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("progress on stderr / summary on stdout missing:\nstdout %s\nstderr %s", stdout.String(), stderr.String())
	}
	g, err := roads.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if g.Source() != "delaware-latest.osm.pbf" {
		t.Errorf("source %q", g.Source())
	}
	// Rodney Square to the Amtrak station, about 1 km.
	d, m, err := g.Route(roads.LatLng{Lat: 39.7459, Lng: -75.5489}, roads.LatLng{Lat: 39.7370, Lng: -75.5510})
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || m < 900 || m > 3000 {
		t.Errorf("route: %v over %.0f m; want a positive time over 0.9–3 km", d, m)
	}

	garbage := filepath.Join(dir, "garbage.osm.pbf")
	if err := os.WriteFile(garbage, []byte("<osm version='0.6'></osm>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.osm.pbf")
	data, err := os.ReadFile(pbf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no --osm", []string{"--out", out}, "--osm is required"},
		{"no --out", []string{"--osm", pbf}, "--out is required"},
		{"missing input", []string{"--osm", filepath.Join(dir, "nope.osm.pbf"), "--out", out}, "--osm: open"},
		{"not a PBF", []string{"--osm", garbage, "--out", out}, "--osm " + garbage + ": roads: malformed OSM PBF"},
		{"truncated PBF", []string{"--osm", truncated, "--out", out}, "truncated"},
		{"bad bbox", []string{"--osm", pbf, "--out", out, "--bbox", "39.7,-75.6,39.8"}, "--bbox: want minLat,minLng,maxLat,maxLng"},
		{"inverted bbox", []string{"--osm", pbf, "--out", out, "--bbox", "39.8,-75.5,39.7,-75.6"}, "--bbox: roads: invalid bounding box"},
		{"empty bbox", []string{"--osm", pbf, "--out", out, "--bbox", "38.0,-74.5,38.1,-74.4"}, "no drivable roads"},
		{"bad speed", []string{"--osm", pbf, "--out", out, "--speeds", "residential=fast"}, "--speeds: residential"},
		{"output directory missing", []string{"--osm", pbf, "--out", filepath.Join(dir, "no", "x.roads")}, "--out"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, append([]string{"roads", "build"}, tc.args...)...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("err %v, stderr %q: want failure mentioning %q", err, stderr.String(), tc.want)
			}
		})
	}
}
