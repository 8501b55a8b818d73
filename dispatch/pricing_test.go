package dispatch

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

func sfSurgeCell(t *testing.T) geo.Cell {
	c, err := geo.CellAt(geo.LatLng{Lat: 37.7749, Lng: -122.4194}, 8)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSurgeRatioCapAndNeighbours(t *testing.T) {
	clk := newFakeClock()
	cfg := DefaultSurgeConfig()
	cfg.NeighborWeight = 0
	c := sfSurgeCell(t)
	for _, tc := range []struct {
		demand, supply int
		want           float64
	}{
		{0, 10, 1.0},   // no demand
		{10, 10, 1.0},  // ratio 1 = threshold
		{30, 10, 2.0},  // ratio 3 → 1 + 0.5·2
		{100, 10, 3.0}, // capped
		{5, 0, 3.0},    // no supply: ratio 5 → 3.0
	} {
		s, err := NewSurge(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.RecordSupply(c, tc.supply, clk.Now())
		for i := 0; i < tc.demand; i++ {
			_ = s.RecordDemand(c, clk.Now())
		}
		r, err := s.At(c, clk.Now())
		if err != nil || r.Multiplier != tc.want || r.Demand != tc.demand {
			t.Errorf("demand %d supply %d: %+v %v, want %v", tc.demand, tc.supply, r, err, tc.want)
		}
	}
	// Neighbour smoothing: a hot cell among calm ones is pulled down, and
	// lifts its neighbours a little.
	cfg.NeighborWeight = 0.5
	s, _ := NewSurge(cfg)
	_ = s.RecordSupply(c, 10, clk.Now())
	for i := 0; i < 30; i++ {
		_ = s.RecordDemand(c, clk.Now())
	}
	r, _ := s.At(c, clk.Now())
	if r.Raw != 2 || r.Multiplier != 1.5 {
		t.Fatalf("smoothed %+v", r)
	}
	nb, _ := geo.Neighbors(c)
	r, _ = s.At(nb[0], clk.Now())
	if r.Raw != 1 || math.Abs(r.Multiplier-1.1) > 1e-9 { // 0.5·1 + 0.5·(2+5·1)/6 = 1.083 → 1.1
		t.Fatalf("neighbour %+v", r)
	}
	coarse, _ := c.Parent(7)
	if _, err := s.At(coarse, clk.Now()); !errors.Is(err, ErrResolution) {
		t.Fatalf("wrong resolution: %v", err)
	}
	// The window slides: demand older than the window is forgotten.
	s2, _ := NewSurge(DefaultSurgeConfig())
	_ = s2.RecordDemand(c, clk.Now())
	if r, _ := s2.At(c, clk.Advance(11*time.Minute)); r.Demand != 0 {
		t.Fatalf("old demand counted: %+v", r)
	}
	if n := s2.Prune(clk.Now()); n == 0 {
		t.Fatal("prune removed nothing")
	}
}

// TestSurgeHysteresis: a ratio oscillating around a step boundary must not
// flap the published multiplier; a real change moves it, but not sooner
// than MinHold.
func TestSurgeHysteresis(t *testing.T) {
	clk := newFakeClock()
	cfg := DefaultSurgeConfig()
	cfg.NeighborWeight = 0
	cfg.Window, cfg.Buckets = time.Minute, 1 // one bucket: each minute stands alone
	s, _ := NewSurge(cfg)
	c := sfSurgeCell(t)
	set := func(demand int) SurgeReading {
		now := clk.Advance(time.Minute)
		_ = s.RecordSupply(c, 10, now)
		for i := 0; i < demand; i++ {
			_ = s.RecordDemand(c, now)
		}
		r, err := s.At(c, now)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := set(30); r.Multiplier != 2.0 {
		t.Fatalf("start %+v", r)
	}
	// Targets 2.1, 1.9, 2.1, 1.9 …: within the 0.2 band → stays 2.0.
	for i := 0; i < 10; i++ {
		d := 32
		if i%2 == 1 {
			d = 28
		}
		if r := set(d); r.Multiplier != 2.0 {
			t.Fatalf("flapped at step %d: %+v", i, r)
		}
	}
	// A real rise moves it.
	if r := set(40); r.Multiplier != 2.5 {
		t.Fatalf("rise %+v", r)
	}
	// MinHold: a drop right after a change waits.
	cfg.MinHold = 5 * time.Minute
	s, _ = NewSurge(cfg)
	set(40)
	if r := set(10); r.Multiplier != 2.5 || r.Target != 1.0 {
		t.Fatalf("drop within hold %+v", r)
	}
	for i := 0; i < 3; i++ {
		set(10)
	}
	if r := set(10); r.Multiplier != 1.0 {
		t.Fatalf("drop after hold %+v", r)
	}
}

func TestSurgeConfigValidate(t *testing.T) {
	for _, mod := range []func(*SurgeConfig){
		func(c *SurgeConfig) { c.Max = 0.5 },
		func(c *SurgeConfig) { c.Min = 0 },
		func(c *SurgeConfig) { c.Buckets = 0 },
		func(c *SurgeConfig) { c.NeighborWeight = 2 },
		func(c *SurgeConfig) { c.Step = 0 },
		func(c *SurgeConfig) { c.Resolution = 20 },
	} {
		cfg := DefaultSurgeConfig()
		mod(&cfg)
		if _, err := NewSurge(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

var prices = PriceTable{
	"x":     {Currency: "USD", Base: 250, PerKm: 120, PerMinute: 30, Minimum: 800},
	"black": {Currency: "USD", Base: 800, PerKm: 350, PerMinute: 65, Minimum: 1500},
}

func TestFare(t *testing.T) {
	if err := prices.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		product string
		dist    float64
		dur     time.Duration
		surge   float64
		want    Fare
	}{
		{"plain", "x", 5000, 12 * time.Minute, 1, Fare{Product: "x", Currency: "USD", Base: 250, Distance: 600, Time: 360, Subtotal: 1210, PreSurge: 1210, SurgeMilli: 1000, Total: 1210}},
		{"minimum", "x", 500, time.Minute, 1, Fare{Product: "x", Currency: "USD", Base: 250, Distance: 60, Time: 30, Subtotal: 340, PreSurge: 800, SurgeMilli: 1000, Total: 800}},
		{"surge on minimum", "x", 500, time.Minute, 1.5, Fare{Product: "x", Currency: "USD", Base: 250, Distance: 60, Time: 30, Subtotal: 340, PreSurge: 800, SurgeMilli: 1500, Total: 1200}},
		// 1234.5 m → 1235 m (half up) → 120·1235/1000 = 148.2 → 148; 61 s → 30·61/60 = 30.5 → 31.
		{"rounding", "x", 1234.5, 61 * time.Second, 1.2345, Fare{Product: "x", Currency: "USD", Base: 250, Distance: 148, Time: 31, Subtotal: 429, PreSurge: 800, SurgeMilli: 1235, Total: 988}},
		{"black", "black", 10000, 20 * time.Minute, 2, Fare{Product: "black", Currency: "USD", Base: 800, Distance: 3500, Time: 1300, Subtotal: 5600, PreSurge: 5600, SurgeMilli: 2000, Total: 11200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := prices.Fare(tc.product, tc.dist, tc.dur, tc.surge)
			if err != nil || got != tc.want {
				t.Fatalf("Fare = %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
	if _, err := prices.Fare("pool", 1, time.Second, 1); !errors.Is(err, ErrUnknownProduct) {
		t.Fatalf("unknown product: %v", err)
	}
	if _, err := prices.Fare("x", -1, time.Second, 1); !errors.Is(err, ErrInvalidQuery) {
		t.Fatalf("negative distance: %v", err)
	}
	if err := (PriceTable{"x": {Currency: "usd"}}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("lowercase currency: %v", err)
	}
}

func testSigner(t *testing.T, clk Clock) *QuoteSigner {
	t.Helper()
	s, err := NewQuoteSigner(QuoteConfig{
		KeyID: "k2",
		Keys:  map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32), "k2": bytes.Repeat([]byte{2}, 32)},
		TTL:   5 * time.Minute,
		Rand:  bytes.NewReader(bytes.Repeat([]byte{7}, 1200)),
	}, clk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQuoteSignVerify(t *testing.T) {
	clk := newFakeClock()
	s := testSigner(t, clk)
	f := QuoteFields{RiderID: "r1", Product: "x", Pickup: geo.LatLng{Lat: 37.77, Lng: -122.41}, Dropoff: geo.LatLng{Lat: 37.79, Lng: -122.39},
		Currency: "USD", Amount: 1210, SurgeMilli: 1000, DistanceM: 5000, DurationS: 720}
	q, err := s.Issue(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(q.ID, "q1.k2.") || !q.ExpiresAt.Equal(clk.Now().Add(5*time.Minute)) {
		t.Fatalf("quote %+v", q)
	}
	if exp, err := ParseQuoteExpiry(q.ID); err != nil || !exp.Equal(q.ExpiresAt) {
		t.Fatalf("expiry from id: %v %v", exp, err)
	}
	if err := s.Verify(q); err != nil {
		t.Fatalf("genuine quote: %v", err)
	}
	tamper := []struct {
		name string
		mod  func(*Quote)
		want error
	}{
		{"amount", func(q *Quote) { q.Amount-- }, ErrQuoteTampered},
		{"product", func(q *Quote) { q.Product = "black" }, ErrQuoteTampered},
		{"pickup", func(q *Quote) { q.Pickup.Lat += 0.001 }, ErrQuoteTampered},
		{"surge", func(q *Quote) { q.SurgeMilli = 900 }, ErrQuoteTampered},
		{"rider", func(q *Quote) { q.RiderID = "r2" }, ErrQuoteTampered},
		{"expiry field", func(q *Quote) { q.ExpiresAt = q.ExpiresAt.Add(time.Hour) }, ErrQuoteTampered},
		{"expiry in id", func(q *Quote) {
			p := strings.Split(q.ID, ".")
			p[2] = "9999999999"
			q.ID = strings.Join(p, ".")
		}, ErrQuoteTampered},
		{"mac", func(q *Quote) {
			p := strings.Split(q.ID, ".")
			p[4] = strings.Repeat("A", len(p[4]))
			q.ID = strings.Join(p, ".")
		}, ErrQuoteTampered},
		{"unknown key", func(q *Quote) { q.ID = strings.Replace(q.ID, ".k2.", ".k9.", 1) }, ErrQuoteUnknownKey},
		{"garbage", func(q *Quote) { q.ID = "nonsense" }, ErrQuoteMalformed},
		{"bad nonce", func(q *Quote) {
			p := strings.Split(q.ID, ".")
			p[3] = "!!"
			q.ID = strings.Join(p, ".")
		}, ErrQuoteMalformed},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			q2 := q
			tc.mod(&q2)
			if err := s.Verify(q2); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v want %v", err, tc.want)
			}
		})
	}
	// Rotation: a quote signed with k1 by an older signer still verifies.
	old, _ := NewQuoteSigner(QuoteConfig{KeyID: "k1", Keys: map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32)}, TTL: time.Minute}, clk)
	q1, _ := old.Issue(f)
	if err := s.Verify(q1); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	// Expiry.
	clk.Advance(5*time.Minute - time.Second)
	if err := s.Verify(q); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	clk.Advance(time.Second)
	err = s.Verify(q)
	var ee *QuoteExpiredError
	if !errors.Is(err, ErrQuoteExpired) || !errors.As(err, &ee) || !ee.ExpiredAt.Equal(q.ExpiresAt) {
		t.Fatalf("expired: %v", err)
	}
	// Tampered and expired: tampering wins.
	q.Amount = 1
	if err := s.Verify(q); !errors.Is(err, ErrQuoteTampered) {
		t.Fatalf("tampered+expired: %v", err)
	}
}

func TestQuoteConfigValidate(t *testing.T) {
	for _, cfg := range []QuoteConfig{
		{KeyID: "k", Keys: map[string][]byte{"k": make([]byte, 31)}, TTL: time.Minute},
		{KeyID: "k", Keys: map[string][]byte{"j": make([]byte, 32)}, TTL: time.Minute},
		{KeyID: "k.1", Keys: map[string][]byte{"k.1": make([]byte, 32)}, TTL: time.Minute},
		{KeyID: "k", Keys: map[string][]byte{"k": make([]byte, 32)}},
	} {
		if _, err := NewQuoteSigner(cfg, newFakeClock()); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
