package dispatch

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a Clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// sfBox is the simulated city of the benchmarks.
var sfBox = struct{ minLat, maxLat, minLng, maxLng float64 }{37.70, 37.82, -122.52, -122.36}

func randomSF(rng *rand.Rand) geo.LatLng {
	return geo.LatLng{
		Lat: sfBox.minLat + rng.Float64()*(sfBox.maxLat-sfBox.minLat),
		Lng: sfBox.minLng + rng.Float64()*(sfBox.maxLng-sfBox.minLng),
	}
}

func mustIndex(t testing.TB, cfg IndexConfig, clk Clock) *Index {
	t.Helper()
	ix, err := NewIndex(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
