package matching

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// benchEngines caches the big engines across benchmark runs in one process
// (-count=6 would otherwise rebuild 1M drivers six times).
var benchEngines sync.Map

func benchEngine(b *testing.B, n int) (*Engine, *testClock) {
	type built struct {
		e   *Engine
		clk *testClock
	}
	if v, ok := benchEngines.Load(n); ok {
		return v.(built).e, v.(built).clk
	}
	e, clk := supplyEngine(b, 6, m0)
	fillDrivers(b, e, n, 0, 1)
	benchEngines.Store(n, built{e, clk})
	return e, clk
}

// BenchmarkSupplyTick measures one round of the expiry loop (Expire, then
// the surge supply sample) over n drivers uniform in the SF box, in-process
// (no sockets): "counters" is e.tick over the index's per-cell counters,
// "snapshot" the Snapshot-based tick it replaced, on the same index in the
// same run; "counters-sample-only" is sampleSupply alone (the rest of a
// tick is Expire's scan of the records). Nothing expires (drivers are fresh), so both keep the index
// unchanged.
func BenchmarkSupplyTick(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, mode := range []struct {
			name string
			tick func(*Engine, time.Time)
		}{
			{"counters", (*Engine).tick},
			{"snapshot", snapshotTick},
			{"counters-sample-only", (*Engine).sampleSupply},
		} {
			b.Run(fmt.Sprintf("in-process/%dk/%s", n/1000, mode.name), func(b *testing.B) {
				e, clk := benchEngine(b, n)
				mode.tick(e, clk.now)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					mode.tick(e, clk.now)
				}
				b.StopTimer()
				if e.supply.index.Len() != n {
					b.Fatalf("index changed: %d drivers", e.supply.index.Len())
				}
			})
		}
	}
}
