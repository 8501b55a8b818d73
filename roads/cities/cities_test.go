package cities

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hexride/hexride/roads"
)

func TestWilmington(t *testing.T) {
	g, err := Wilmington()
	if err != nil {
		t.Fatal(err)
	}
	if g.Source() != "delaware-latest.osm.pbf" {
		t.Errorf("source %q", g.Source())
	}
	// Rodney Square to Wilmington Hospital, both downtown.
	d, m, err := g.Route(roads.LatLng{Lat: 39.7459, Lng: -75.5489}, roads.LatLng{Lat: 39.7502, Lng: -75.5569})
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || m < 500 || m > 3000 {
		t.Errorf("route: %v over %.0f m", d, m)
	}
}

// TestWilmingtonIsReproducible rebuilds the committed graph from the
// Delaware extract and compares bytes: the build is deterministic, and a
// change to the importer, the contraction or the file format must come
// with a regenerated file (make roads-cities).
func TestWilmingtonIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the Delaware extract")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/paulmach/osm").Output()
	if err != nil {
		t.Fatalf("go list github.com/paulmach/osm: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "testdata", "delaware-latest.osm.pbf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bbox := WilmingtonBBox
	g, _, err := roads.Build(context.Background(), f, roads.BuildOptions{BBox: &bbox, Source: "delaware-latest.osm.pbf"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := g.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), wilmington) {
		t.Errorf("a fresh build (%d bytes) differs from the committed wilmington.roads (%d bytes): run make roads-cities", buf.Len(), len(wilmington))
	}
}
