package roads

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// In-process benchmarks. Run single-core, e.g.
//
//	GOMAXPROCS=1 go test -run '^$' -bench . -benchtime 3x -count 3 ./roads/
//
// (Build and Load with -benchtime 1x or 3x: one iteration is a whole build.)

var benchAreas = []struct {
	name string
	bbox *BBox
}{
	{"wilmington", &wilmington},
	{"delaware", nil},
}

// peakHeap samples HeapAlloc every millisecond until stop is called and
// returns the largest value seen (a sampled peak: it can miss a spike
// shorter than the period).
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > peak.Load() {
			peak.Store(ms.HeapAlloc)
		}
	}
	sample()
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		sample()
		return peak.Load()
	}
}

// BenchmarkBuild measures preprocessing from the PBF bytes in memory:
// reading, SCC, contraction. Metrics: output file bytes, sampled peak heap
// (MB, including the 7.8 MB input) and the two stages' seconds.
func BenchmarkBuild(b *testing.B) {
	pbf, err := os.ReadFile(delawarePBF(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range benchAreas {
		b.Run(a.name, func(b *testing.B) {
			var size int
			var peak uint64
			var st BuildStats
			for b.Loop() {
				runtime.GC()
				stop := peakHeap()
				g, s, err := Build(context.Background(), bytes.NewReader(pbf), BuildOptions{BBox: a.bbox})
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, stop())
				st = s
				var buf bytes.Buffer
				if _, err := g.WriteTo(&buf); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
			}
			b.ReportMetric(float64(size), "file-bytes")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
			b.ReportMetric(st.Read.Seconds(), "read-s")
			b.ReportMetric(st.Contract.Seconds(), "contract-s")
			b.ReportMetric(float64(st.SCCNodes), "nodes")
			b.ReportMetric(float64(st.Shortcuts), "shortcuts")
		})
	}
}

// BenchmarkLoad measures Load of a graph file (page cache warm).
func BenchmarkLoad(b *testing.B) {
	for _, a := range benchAreas {
		b.Run(a.name, func(b *testing.B) {
			g := cachedGraph(b, a.name, a.bbox)
			path := filepath.Join(b.TempDir(), a.name+".roads")
			if err := g.WriteFile(path); err != nil {
				b.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			for b.Loop() {
				if _, err := Load(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchPoints returns n random snappable points (fixed seed).
func benchPoints(b *testing.B, g *Graph, n int) []LatLng {
	rng := rand.New(rand.NewPCG(1, 2))
	pts := make([]LatLng, n)
	for i := range pts {
		for {
			p := randomPoint(g, rng)
			if _, err := g.Snap(p); err == nil {
				pts[i] = p
				break
			}
		}
	}
	return pts
}

// BenchmarkRoute: one point-to-point query (two snaps and a bidirectional
// CH search) between random points.
func BenchmarkRoute(b *testing.B) {
	for _, a := range benchAreas {
		b.Run(a.name, func(b *testing.B) {
			g := cachedGraph(b, a.name, a.bbox)
			pts := benchPoints(b, g, 1024)
			i := 0
			for b.Loop() {
				if _, _, err := g.Route(pts[i%1024], pts[(i+1)%1024]); err != nil {
					b.Fatal(err)
				}
				i += 2
			}
		})
	}
}

// BenchmarkPath: a point-to-point query with its geometry unpacked (what
// the simulator's cars follow), beside Route in the same run.
func BenchmarkPath(b *testing.B) {
	for _, a := range benchAreas {
		b.Run(a.name, func(b *testing.B) {
			g := cachedGraph(b, a.name, a.bbox)
			pts := benchPoints(b, g, 1024)
			i := 0
			for b.Loop() {
				if _, err := g.Path(pts[i%1024], pts[(i+1)%1024]); err != nil {
					b.Fatal(err)
				}
				i += 2
			}
		})
	}
}

// BenchmarkPickup20: one pickup against 20 drivers, the dispatch shape.
// Drivers are random snappable points within ~3 km of the pickup, as a
// ring search would return. DriveTimesTo (drivers → pickup) is what a
// pickup ETA needs; DriveTimesFacing is it for moving drivers (each
// placed on the road it drives, leaving ahead); DriveTimes is the other
// direction; Route×20 is the naive alternative, measured in the same run.
func BenchmarkPickup20(b *testing.B) {
	for _, a := range benchAreas {
		g := cachedGraph(b, a.name, a.bbox)
		rng := rand.New(rand.NewPCG(3, 4))
		pickups := benchPoints(b, g, 64)
		drivers := make([][]LatLng, len(pickups))
		for i, p := range pickups {
			for len(drivers[i]) < 20 {
				q := LatLng{p.Lat + (rng.Float64()-0.5)*0.05, p.Lng + (rng.Float64()-0.5)*0.06}
				if _, err := g.Snap(q); err == nil {
					drivers[i] = append(drivers[i], q)
				}
			}
		}
		b.Run(a.name+"/DriveTimesTo", func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, _, err := g.DriveTimesTo(drivers[i%64], pickups[i%64]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		headings := make([][]float64, len(pickups))
		for i := range headings {
			for range drivers[i] {
				headings[i] = append(headings[i], rng.Float64()*360)
			}
		}
		b.Run(a.name+"/DriveTimesFacing", func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, _, err := g.DriveTimesFacing(drivers[i%64], headings[i%64], pickups[i%64]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(a.name+"/DriveTimes", func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, _, err := g.DriveTimes(pickups[i%64], drivers[i%64]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(a.name+"/Route×20", func(b *testing.B) {
			i := 0
			for b.Loop() {
				for _, d := range drivers[i%64] {
					if _, _, err := g.Route(d, pickups[i%64]); err != nil {
						b.Fatal(err)
					}
				}
				i++
			}
		})
	}
}

// BenchmarkSnap: nearest-segment lookup alone.
func BenchmarkSnap(b *testing.B) {
	g := cachedGraph(b, "delaware", nil)
	pts := benchPoints(b, g, 1024)
	i := 0
	for b.Loop() {
		if _, err := g.Snap(pts[i%1024]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
