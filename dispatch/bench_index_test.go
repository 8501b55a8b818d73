package dispatch

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

// benchIndexes caches the big indexes across benchmark runs in one process
// (-count=5 would otherwise rebuild 1M drivers five times).
var benchIndexes sync.Map

func sfIndex(b *testing.B, n int) *Index {
	b.Helper()
	if v, ok := benchIndexes.Load(n); ok {
		return v.(*Index)
	}
	ix := mustIndex(b, DefaultIndexConfig(), newFakeClock())
	fillSF(b, ix, n, 1)
	benchIndexes.Store(n, ix)
	return ix
}

func fillSF(b testing.TB, ix *Index, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	products := []string{"x", "xl", "black"}
	for i := 0; i < n; i++ {
		err := ix.Upsert(Location{
			DriverID: fmt.Sprintf("driver-%07d", i), Pos: randomSF(rng), Heading: rng.Float64() * 360, Speed: 8,
			Product: products[i%3], Status: StatusAvailable, Gateway: fmt.Sprintf("10.0.%d.1:7000", i%32),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

var benchMask = 4095

func benchNearest(b *testing.B, n int) {
	ix := sfIndex(b, n)
	rng := rand.New(rand.NewPCG(3, 4))
	qs := make([]geo.LatLng, 4096)
	for i := range qs {
		qs[i] = randomSF(rng)
	}
	buf := make([]Candidate, 0, 10)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var err error
		buf, err = ix.NearestAppend(buf[:0], Query{Pos: qs[i&benchMask], K: 10, MaxRadius: 3000})
		if err != nil || len(buf) != 10 {
			b.Fatal(err, len(buf))
		}
	}
}

// BenchmarkNearest100k: nearest-10 within 3 km among 100k drivers in SF.
func BenchmarkNearest100k(b *testing.B) { benchNearest(b, 100_000) }

// BenchmarkNearest1M: the same among 1M drivers.
func BenchmarkNearest1M(b *testing.B) { benchNearest(b, 1_000_000) }

// BenchmarkNearestParallel: queries from all cores at once (100k drivers).
func BenchmarkNearestParallel(b *testing.B) {
	ix := sfIndex(b, 100_000)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 4))
		buf := make([]Candidate, 0, 10)
		for pb.Next() {
			buf, _ = ix.NearestAppend(buf[:0], Query{Pos: randomSF(rng), K: 10, MaxRadius: 3000})
		}
	})
}

func moveTape(n int) ([]string, []geo.LatLng) {
	rng := rand.New(rand.NewPCG(5, 6))
	ids := make([]string, n)
	pos := make([]geo.LatLng, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("driver-%07d", i)
		pos[i] = randomSF(rng)
	}
	return ids, pos
}

// BenchmarkIndexUpsert: an indexed driver moved a few metres.
func BenchmarkIndexUpsert(b *testing.B) {
	const n = 100_000
	ix := mustIndex(b, DefaultIndexConfig(), newFakeClock())
	ids, pos := moveTape(n)
	for i := range ids {
		if err := ix.Upsert(Location{DriverID: ids[i], Pos: pos[i], Status: StatusAvailable, Product: "x", Gateway: "gw:1"}); err != nil {
			b.Fatal(err)
		}
	}
	loc := Location{Status: StatusAvailable, Product: "x", Gateway: "gw:1", Heading: 45, Speed: 9, At: time.Unix(1_800_000_000, 0)}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i % n
		loc.DriverID = ids[j]
		p := &pos[j]
		p.Lat += 2e-5 * float64(1-2*(i/n&1)) // ~2 m north, then back
		loc.Pos = *p
		if err := ix.Upsert(loc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexUpsertParallel: the same from all cores.
func BenchmarkIndexUpsertParallel(b *testing.B) {
	const n = 100_000
	ix := mustIndex(b, DefaultIndexConfig(), newFakeClock())
	ids, pos := moveTape(n)
	for i := range ids {
		if err := ix.Upsert(Location{DriverID: ids[i], Pos: pos[i], Status: StatusAvailable, Product: "x", Gateway: "gw:1"}); err != nil {
			b.Fatal(err)
		}
	}
	var next sync.Mutex
	worker := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		w := worker
		worker++
		next.Unlock()
		loc := Location{Status: StatusAvailable, Product: "x", Gateway: "gw:1", At: time.Unix(1_800_000_000, 0)}
		for i := 0; pb.Next(); i++ {
			j := (i*7919 + w*50_000) % n
			loc.DriverID = ids[j]
			loc.Pos = geo.LatLng{Lat: pos[j].Lat + 1e-5*float64(i&1), Lng: pos[j].Lng}
			_ = ix.Upsert(loc)
		}
	})
}

// BenchmarkIndexMemory1M reports heap bytes per indexed driver at 1M
// drivers (driver id strings included).
func BenchmarkIndexMemory1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ix := mustIndex(b, DefaultIndexConfig(), newFakeClock())
		fillSF(b, ix, n, 7)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/driver")
		runtime.KeepAlive(ix)
	}
}
