package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, reversed: percentile must sort
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    int
		want time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"empty slice p99", []time.Duration{}, 99, 0},
		{"one sample p50", ms(7), 50, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(5, 1, 3), 0, time.Millisecond},
		{"p100 is the maximum", ms(5, 1, 3), 100, 5 * time.Millisecond},
		{"two samples p50 is the lower (nearest rank)", ms(20, 10), 50, 10 * time.Millisecond},
		{"two samples p51 is the upper", ms(20, 10), 51, 20 * time.Millisecond},
		{"odd count p50 is the median", ms(9, 1, 5, 3, 7), 50, 5 * time.Millisecond},
		{"four samples p50", ms(4, 3, 2, 1), 50, 2 * time.Millisecond},
		{"four samples p99", ms(4, 3, 2, 1), 99, 4 * time.Millisecond},
		{"hundred samples p50", ms(hundred...), 50, 50 * time.Millisecond},
		{"hundred samples p99", ms(hundred...), 99, 99 * time.Millisecond},
		{"duplicates", ms(2, 2, 2, 9), 50, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.ds)
			if got := percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %d) = %v, want %v", tt.ds, tt.p, got, tt.want)
			}
			if !slices.Equal(in, tt.ds) {
				t.Errorf("percentile reordered its input: %v, was %v", tt.ds, in)
			}
		})
	}
}

func TestMS(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want float64
	}{
		{0, 0},
		{time.Millisecond, 1},
		{1500 * time.Microsecond, 1.5},
		{2 * time.Second, 2000},
		{999 * time.Nanosecond, 0}, // below the microsecond resolution
	}
	for _, tt := range tests {
		if got := ms(tt.d); got != tt.want {
			t.Errorf("ms(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

func TestRecorderCounts(t *testing.T) {
	r := newRecorder()
	t0 := time.Now()
	r.requestedTrip("t1", t0, 4*time.Minute)
	r.requestedTrip("t2", t0, 0) // no ETA quoted: not a sample
	r.requestedTrip("t3", t0, 2*time.Minute)

	r.offerSeen("t1", t0.Add(100*time.Millisecond))
	r.offerSeen("t1", t0.Add(900*time.Millisecond))  // a second offer (cascade) is no new latency sample
	r.offerSeen("t2", t0.Add(300*time.Millisecond))  // first offer for t2
	r.offerSeen("gone", t0.Add(50*time.Millisecond)) // a trip this run did not request: counted, no sample

	r.matched("t1", t0.Add(200*time.Millisecond))
	r.matched("t2", t0.Add(400*time.Millisecond))
	r.matched("unknown", t0.Add(time.Hour)) // no request time: no sample

	r.do(func(s *Stats) { s.Completed++; s.InFlight-- })
	r.do(func(s *Stats) { s.Cancelled++; s.InFlight--; s.CancelReasons["rider"]++ })

	s := r.snapshot()
	want := Stats{
		Requests: 3, Matched: 3, Completed: 1, Cancelled: 1, InFlight: 1,
		OffersReceived: 4,
		MatchP50MS:     200, MatchP99MS: 400,
		OfferP50MS: 100, OfferP99MS: 300,
		PickupETAP50S: 120,
		CancelReasons: map[string]int{"rider": 1}, NoDriverReasons: map[string]int{}, Codes: map[string]int{},
	}
	if s.ElapsedS <= 0 {
		t.Errorf("ElapsedS = %v, want > 0", s.ElapsedS)
	}
	s.ElapsedS, s.LocationUpdatesPS = 0, 0
	s.SimCPUS, s.SimCores, s.SimSaturated = 0, 0, false // the test process's own CPU
	if !reflect.DeepEqual(s, want) {
		t.Errorf("snapshot:\n got %+v\nwant %+v", s, want)
	}
}

// Codes, refusals and the trip ids the apps got back.
func TestRecorderCodesRefusalsTrips(t *testing.T) {
	r := newRecorder()
	r.code(nil)
	r.code(nil)
	r.code(status.Error(codes.Unavailable, "down"))
	r.code(status.Error(codes.Internal, "bug"))
	r.refusal(2 * time.Millisecond)
	r.refusal(8 * time.Millisecond)
	r.requestedTrip("t2", time.Now(), 0)
	r.requestedTrip("t1", time.Now(), 0)
	s := r.snapshot()
	if want := map[string]int{"OK": 2, "Unavailable": 1, "Internal": 1}; !reflect.DeepEqual(s.Codes, want) {
		t.Errorf("codes %v, want %v", s.Codes, want)
	}
	if s.Refused != 2 || s.RefusedP50MS != 2 || s.RefusedP99MS != 8 || s.Errors != 0 {
		t.Errorf("refused %d p50 %v p99 %v errors %d; want 2, 2, 8, 0", s.Refused, s.RefusedP50MS, s.RefusedP99MS, s.Errors)
	}
	if s.TripIDs != nil {
		t.Errorf("a progress snapshot carries trip ids %v", s.TripIDs)
	}
	if f := r.final(); !slices.Equal(f.TripIDs, []string{"t1", "t2"}) {
		t.Errorf("final trip ids %v, want [t1 t2]", f.TripIDs)
	}
	s.Codes["OK"] = 99
	if r.snapshot().Codes["OK"] != 2 {
		t.Error("the snapshot shares the recorder's codes map")
	}
}

func TestRecorderLocationRate(t *testing.T) {
	r := newRecorder()
	r.start = time.Now().Add(-10 * time.Second)
	r.do(func(s *Stats) { s.LocationUpdates = 50 })
	s := r.snapshot()
	if s.ElapsedS < 10 {
		t.Fatalf("ElapsedS = %v, want ≥ 10", s.ElapsedS)
	}
	if want := 50 / s.ElapsedS; s.LocationUpdatesPS != want {
		t.Errorf("LocationUpdatesPS = %v, want %v", s.LocationUpdatesPS, want)
	}
	if s.LocationUpdatesPS > 5 || s.LocationUpdatesPS <= 0 {
		t.Errorf("LocationUpdatesPS = %v, want in (0, 5]", s.LocationUpdatesPS)
	}
}

func TestRecorderDoubleAssignments(t *testing.T) {
	type step struct {
		on             bool
		driver, tripID string
	}
	tests := []struct {
		name  string
		steps []step
		want  int
	}{
		{"one trip", []step{{true, "d1", "t1"}, {false, "d1", "t1"}}, 0},
		{"same trip reported twice (offer result and trip update)", []step{{true, "d1", "t1"}, {true, "d1", "t1"}}, 0},
		{"trips one after another", []step{{true, "d1", "t1"}, {false, "d1", "t1"}, {true, "d1", "t2"}}, 0},
		{"two drivers", []step{{true, "d1", "t1"}, {true, "d2", "t2"}}, 0},
		{"second trip while on the first", []step{{true, "d1", "t1"}, {true, "d1", "t2"}}, 1},
		{"ending another trip does not free the driver", []step{{true, "d1", "t1"}, {false, "d1", "t9"}, {true, "d1", "t2"}}, 1},
		{"off without on", []step{{false, "d1", "t1"}, {true, "d1", "t2"}}, 0},
		{"three at once", []step{{true, "d1", "t1"}, {true, "d1", "t2"}, {true, "d1", "t3"}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder()
			for _, s := range tt.steps {
				if s.on {
					r.driverOn(s.driver, s.tripID)
				} else {
					r.driverOff(s.driver, s.tripID)
				}
			}
			if got := r.snapshot().DoubleAssignments; got != tt.want {
				t.Errorf("DoubleAssignments = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRecorderErrorSamples(t *testing.T) {
	r := newRecorder()
	for i := range 25 {
		r.error(fmt.Errorf("boom %d", i))
	}
	s := r.snapshot()
	if s.Errors != 25 {
		t.Errorf("Errors = %d, want 25", s.Errors)
	}
	if len(s.ErrorSamples) != 10 || s.ErrorSamples[0] != "boom 0" || s.ErrorSamples[9] != "boom 9" {
		t.Errorf("ErrorSamples = %q, want the first 10", s.ErrorSamples)
	}
}

// A snapshot is a copy: whoever holds it (the Progress callback) cannot
// change or race with the recorder.
func TestSnapshotIsACopy(t *testing.T) {
	r := newRecorder()
	r.error(errors.New("first"))
	r.do(func(s *Stats) { s.CancelReasons["rider"] = 1; s.NoDriverReasons["timeout"] = 1 })
	s := r.snapshot()
	s.CancelReasons["rider"] = 99
	s.NoDriverReasons["timeout"] = 99
	s.ErrorSamples[0] = "changed"
	r.error(errors.New("second"))
	again := r.snapshot()
	if again.CancelReasons["rider"] != 1 || again.NoDriverReasons["timeout"] != 1 {
		t.Errorf("snapshot maps alias the recorder's: %v %v", again.CancelReasons, again.NoDriverReasons)
	}
	if !slices.Equal(again.ErrorSamples, []string{"first", "second"}) {
		t.Errorf("ErrorSamples = %q, want [first second]", again.ErrorSamples)
	}
	if len(s.ErrorSamples) != 1 {
		t.Errorf("an earlier snapshot grew: %q", s.ErrorSamples)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	r := newRecorder()
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 100 {
				id := fmt.Sprintf("t%d-%d", w, i)
				r.requestedTrip(id, time.Now(), time.Minute)
				r.offerSeen(id, time.Now())
				r.matched(id, time.Now())
				r.driverOn(fmt.Sprintf("d%d", w), id)
				r.driverOff(fmt.Sprintf("d%d", w), id)
				r.do(func(s *Stats) { s.Completed++; s.InFlight-- })
				_ = r.snapshot()
			}
		}()
	}
	for range 4 {
		<-done
	}
	s := r.snapshot()
	if s.Requests != 400 || s.Matched != 400 || s.Completed != 400 || s.InFlight != 0 || s.OffersReceived != 400 || s.DoubleAssignments != 0 {
		t.Errorf("after 400 rides on 4 goroutines: %+v", s)
	}
}

// The summary JSON is what `hexride sim --json` prints and scripts parse:
// its field names are an interface.
func TestStatsJSON(t *testing.T) {
	tests := []struct {
		name string
		s    Stats
		want map[string]any
	}{
		{
			name: "zero omits reasons and samples",
			s:    Stats{CancelReasons: map[string]int{}, NoDriverReasons: map[string]int{}},
			want: map[string]any{
				"requests": 0.0, "matched": 0.0, "completed": 0.0, "cancelled": 0.0, "no_driver": 0.0,
				"lost": 0.0, "in_flight": 0.0, "errors": 0.0, "offers_received": 0.0, "offers_accepted": 0.0,
				"offers_declined": 0.0, "location_updates": 0.0, "match_p50_ms": 0.0, "match_p99_ms": 0.0,
				"offer_p50_ms": 0.0, "offer_p99_ms": 0.0, "pickup_eta_p50_s": 0.0, "location_updates_per_s": 0.0,
				"elapsed_s": 0.0, "double_assignments": 0.0,
				"refused": 0.0, "refused_p50_ms": 0.0, "refused_p99_ms": 0.0,
				"sim_cpu_s": 0.0, "sim_cores": 0.0, "sim_saturated": false, "trips_per_driver_cv": 0.0,
			},
		},
		{
			name: "full",
			s: Stats{
				Requests: 10, Matched: 9, Completed: 7, Cancelled: 1, NoDriver: 1, Lost: 1, InFlight: 0, Errors: 2,
				OffersReceived: 12, OffersAccepted: 9, OffersDeclined: 3, LocationUpdates: 500,
				MatchP50MS: 120.5, MatchP99MS: 900, OfferP50MS: 80, OfferP99MS: 300, PickupETAP50S: 240,
				LocationUpdatesPS: 50, ElapsedS: 10, DoubleAssignments: 0,
				CancelReasons: map[string]int{"rider": 1}, NoDriverReasons: map[string]int{"deadline": 1},
				ErrorSamples: []string{"a", "b"},
				Refused:      3, RefusedP50MS: 1.5, RefusedP99MS: 4,
				Codes:   map[string]int{"OK": 40, "Unavailable": 2, "Internal": 1},
				TripIDs: []string{"t1", "t2"}, // not in the JSON
				SimCPUS: 4, SimCores: 0.4, TripsPerDriverCV: 0.5,
				Pickups: 7, PickupMeanS: 90, PickupP95S: 200, PickupP99S: 300, PickupETAErrorP50: 0.03, PickupETAAbsErrorP50: 0.07,
			},
			want: map[string]any{
				"requests": 10.0, "matched": 9.0, "completed": 7.0, "cancelled": 1.0, "no_driver": 1.0,
				"lost": 1.0, "in_flight": 0.0, "errors": 2.0, "offers_received": 12.0, "offers_accepted": 9.0,
				"offers_declined": 3.0, "location_updates": 500.0, "match_p50_ms": 120.5, "match_p99_ms": 900.0,
				"offer_p50_ms": 80.0, "offer_p99_ms": 300.0, "pickup_eta_p50_s": 240.0, "location_updates_per_s": 50.0,
				"elapsed_s": 10.0, "double_assignments": 0.0,
				"refused": 3.0, "refused_p50_ms": 1.5, "refused_p99_ms": 4.0,
				"codes":     map[string]any{"OK": 40.0, "Unavailable": 2.0, "Internal": 1.0},
				"sim_cpu_s": 4.0, "sim_cores": 0.4, "sim_saturated": false, "trips_per_driver_cv": 0.5,
				"pickups": 7.0, "pickup_mean_s": 90.0, "pickup_p95_s": 200.0, "pickup_p99_s": 300.0,
				"pickup_eta_error_p50": 0.03, "pickup_eta_abs_error_p50": 0.07,
				"cancel_reasons": map[string]any{"rider": 1.0}, "no_driver_reasons": map[string]any{"deadline": 1.0},
				"error_samples": []any{"a", "b"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("JSON = %s\nwant %v", b, tt.want)
			}
			var back Stats
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.Requests != tt.s.Requests || back.MatchP50MS != tt.s.MatchP50MS || !slices.Equal(back.ErrorSamples, tt.s.ErrorSamples) {
				t.Errorf("round trip = %+v, want %+v", back, tt.s)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	tests := []struct {
		name   string
		counts map[string]int
		n      int
		want   float64
	}{
		{"nobody drove", nil, 10, 0},
		{"everyone the same", map[string]int{"a": 2, "b": 2}, 2, 0},
		{"half drove one, half none", map[string]int{"a": 1, "b": 1}, 4, 1},
		{"one of four did it all", map[string]int{"a": 4}, 4, math.Sqrt(3)},
	}
	for _, tc := range tests {
		if got := spread(tc.counts, tc.n); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: spread %v, want %v", tc.name, got, tc.want)
		}
	}
}
