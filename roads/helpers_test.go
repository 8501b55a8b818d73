package roads

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// delawarePBF is the Delaware extract shipped in the module cache with
// github.com/paulmach/osm v0.8.0 (© OpenStreetMap contributors, ODbL).
func delawarePBF(tb testing.TB) string {
	tb.Helper()
	pbfOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/paulmach/osm").Output()
		if err != nil {
			pbfErr = err
			return
		}
		pbfPath = filepath.Join(strings.TrimSpace(string(out)), "testdata", "delaware-latest.osm.pbf")
		_, pbfErr = os.Stat(pbfPath)
	})
	if pbfErr != nil {
		tb.Fatalf("Delaware extract (go mod download github.com/paulmach/osm@v0.8.0): %v", pbfErr)
	}
	return pbfPath
}

var (
	pbfOnce sync.Once
	pbfPath string
	pbfErr  error
)

// wilmington is the area of the committed graph (see cities/README.md).
var wilmington = BBox{MinLat: 39.70, MinLng: -75.62, MaxLat: 39.80, MaxLng: -75.50}

func buildFile(tb testing.TB, bbox *BBox) (*Graph, BuildStats) {
	tb.Helper()
	f, err := os.Open(delawarePBF(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	g, st, err := Build(context.Background(), f, BuildOptions{BBox: bbox, Source: "delaware-latest.osm.pbf"})
	if err != nil {
		tb.Fatal(err)
	}
	return g, st
}

// cachedGraph builds a graph once per test binary run, writes it to a
// temporary file and loads it back, so the tests query what a server loads.
func cachedGraph(tb testing.TB, name string, bbox *BBox) *Graph {
	tb.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if g, ok := cache[name]; ok {
		return g
	}
	g, st := buildFile(tb, bbox)
	tb.Logf("%s: %+v", name, st)
	dir, err := os.MkdirTemp("", "roads-test-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name+".roads")
	if err := g.WriteFile(path); err != nil {
		tb.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	cache[name] = loaded
	return loaded
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*Graph{}
)
