package sim

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// Stats is what a run measured.
type Stats struct {
	Requests  int `json:"requests"`
	Matched   int `json:"matched"`
	Completed int `json:"completed"`
	Cancelled int `json:"cancelled"`
	NoDriver  int `json:"no_driver"`
	Lost      int `json:"lost"`
	// Refused counts ride requests the platform refused before doing any
	// work (ResourceExhausted on GetQuote or RequestRide: a rate limit or
	// load shedding); the rider gave up on them. They are neither errors nor
	// lost. RefusedP50MS and RefusedP99MS are how long a refusal took to
	// answer.
	Refused        int `json:"refused"`
	InFlight       int `json:"in_flight"`
	Errors         int `json:"errors"`
	OffersReceived int `json:"offers_received"`
	OffersAccepted int `json:"offers_accepted"`
	OffersDeclined int `json:"offers_declined"`
	// LocationUpdates counts the samples the gateway confirmed taking.
	// It confirms them together (cumulative Acks), so samples of the last
	// Cadence.sample_ack_interval of a session may not be counted.
	LocationUpdates int `json:"location_updates"`
	// Latencies in milliseconds (and pickup ETA in seconds) at the 50th and
	// 99th percentiles.
	MatchP50MS        float64 `json:"match_p50_ms"`
	MatchP99MS        float64 `json:"match_p99_ms"`
	OfferP50MS        float64 `json:"offer_p50_ms"`
	OfferP99MS        float64 `json:"offer_p99_ms"`
	PickupETAP50S     float64 `json:"pickup_eta_p50_s"`
	LocationUpdatesPS float64 `json:"location_updates_per_s"`
	ElapsedS          float64 `json:"elapsed_s"`
	DoubleAssignments int     `json:"double_assignments"`
	// ChainedTrips counts trips drivers took while carrying a rider, to
	// start when that ride ended (chained supply).
	ChainedTrips    int            `json:"chained_trips,omitempty"`
	CancelReasons   map[string]int `json:"cancel_reasons,omitempty"`
	NoDriverReasons map[string]int `json:"no_driver_reasons,omitempty"`
	ErrorSamples    []string       `json:"error_samples,omitempty"`
	RefusedP50MS    float64        `json:"refused_p50_ms"`
	RefusedP99MS    float64        `json:"refused_p99_ms"`
	// Codes counts every gRPC status the apps saw, by code name: each
	// attempt of a unary call (OK included) and each end of a stream (a
	// clean end of a trip watch excluded). Errors counts only the calls that
	// failed for good.
	Codes map[string]int `json:"codes,omitempty"`
	// TripIDs are the trips the apps got a RequestRide answer for (sorted;
	// only in the final summary). A trip in the store that is not here is a
	// ghost: created for a rider who never heard of it.
	TripIDs []string `json:"-"`
	// On streets (Config.Roads): Pickups is how many cars set off to a
	// pickup; PickupMeanS, PickupP95S and PickupP99S are those drives (the
	// road route from where the car was when assigned, at road speed: what
	// the rider waits once matched, in real time or not); PickupETAErrorP50
	// is the median of (quoted ETA − drive) / drive over the rides whose
	// quote had an ETA (negative: the quote promised too little), and
	// PickupETAAbsErrorP50 the median of its absolute value.
	Pickups              int     `json:"pickups,omitempty"`
	PickupMeanS          float64 `json:"pickup_mean_s,omitempty"`
	PickupP95S           float64 `json:"pickup_p95_s,omitempty"`
	PickupP99S           float64 `json:"pickup_p99_s,omitempty"`
	PickupETAErrorP50    float64 `json:"pickup_eta_error_p50,omitempty"`
	PickupETAAbsErrorP50 float64 `json:"pickup_eta_abs_error_p50,omitempty"`
	// TripsPerDriverCV is a fairness figure: the coefficient of variation
	// (standard deviation / mean) of trips per driver over every simulated
	// driver, idle ones included (0: all drove the same number).
	TripsPerDriverCV float64 `json:"trips_per_driver_cv"`
	// The simulator's own CPU: seconds used, cores used on average, and
	// whether it was near the machine's share for it (then the figures above
	// describe the simulator, not the platform: run it elsewhere or smaller).
	SimCPUS      float64 `json:"sim_cpu_s"`
	SimCores     float64 `json:"sim_cores"`
	SimSaturated bool    `json:"sim_saturated"`
}

// recorder collects measurements from every agent.
type recorder struct {
	mu        sync.Mutex
	start     time.Time
	startCPU  time.Duration
	s         Stats
	requested map[string]time.Time // trip id → when RequestRide returned
	offered   map[string]bool      // trip id → first offer seen
	match     []time.Duration
	offer     []time.Duration
	eta       []time.Duration
	active    map[string]string        // driver id → trip id it is on
	refusals  []time.Duration          // how long each refusal took to answer
	quoted    map[string]time.Duration // trip id → pickup ETA the rider was quoted
	drivers   int                      // simulated drivers, for TripsPerDriverCV
	trips     map[string]int           // driver id → trips started
	drives    []time.Duration          // drives to the pickup
	etaErrors []float64                // (quoted − drive) / drive
}

func newRecorder() *recorder {
	return &recorder{
		start:     time.Now(),
		startCPU:  processCPU(),
		requested: map[string]time.Time{},
		offered:   map[string]bool{},
		active:    map[string]string{},
		quoted:    map[string]time.Duration{},
		trips:     map[string]int{},
		s:         Stats{CancelReasons: map[string]int{}, NoDriverReasons: map[string]int{}, Codes: map[string]int{}},
	}
}

func (r *recorder) do(f func(s *Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.s)
}

func (r *recorder) error(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Errors++
	if len(r.s.ErrorSamples) < 10 {
		r.s.ErrorSamples = append(r.s.ErrorSamples, err.Error())
	}
}

// code counts the status an app saw (nil: OK).
func (r *recorder) code(err error) {
	c := status.Code(err).String()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Codes[c]++
}

// refusal records a ride request refused before any work, answered in took.
func (r *recorder) refusal(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Refused++
	r.refusals = append(r.refusals, took)
}

func (r *recorder) requestedTrip(id string, at time.Time, eta time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Requests++
	r.s.InFlight++
	r.requested[id] = at
	if eta > 0 {
		r.eta = append(r.eta, eta)
		r.quoted[id] = eta
	}
}

// pickupDrive records a car's drive to a trip's pickup.
func (r *recorder) pickupDrive(tripID string, drive time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Pickups++
	r.drives = append(r.drives, drive)
	if q, ok := r.quoted[tripID]; ok && drive > 0 {
		r.etaErrors = append(r.etaErrors, (q-drive).Seconds()/drive.Seconds())
	}
}

func (r *recorder) offerSeen(tripID string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.OffersReceived++
	if r.offered[tripID] {
		return
	}
	r.offered[tripID] = true
	if t0, ok := r.requested[tripID]; ok {
		r.offer = append(r.offer, at.Sub(t0))
	}
}

func (r *recorder) matched(tripID string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Matched++
	if t0, ok := r.requested[tripID]; ok {
		r.match = append(r.match, at.Sub(t0))
	}
}

// driverOn records that a driver started a trip; a driver already on
// another trip is a double assignment (the platform must never allow it).
func (r *recorder) driverOn(driverID, tripID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	other, busy := r.active[driverID]
	if busy && other != tripID {
		r.s.DoubleAssignments++
	}
	if !busy || other != tripID {
		r.trips[driverID]++
	}
	r.active[driverID] = tripID
}

func (r *recorder) driverOff(driverID, tripID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[driverID] == tripID {
		delete(r.active, driverID)
	}
}

func (r *recorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.CancelReasons = maps.Clone(r.s.CancelReasons)
	s.NoDriverReasons = maps.Clone(r.s.NoDriverReasons)
	s.ErrorSamples = slices.Clone(r.s.ErrorSamples)
	s.Codes = maps.Clone(r.s.Codes)
	elapsed := time.Since(r.start)
	s.ElapsedS = elapsed.Seconds()
	cpuReport(&s, processCPU()-r.startCPU, elapsed)
	if s.ElapsedS > 0 {
		s.LocationUpdatesPS = float64(s.LocationUpdates) / s.ElapsedS
	}
	s.MatchP50MS, s.MatchP99MS = ms(percentile(r.match, 50)), ms(percentile(r.match, 99))
	s.OfferP50MS, s.OfferP99MS = ms(percentile(r.offer, 50)), ms(percentile(r.offer, 99))
	s.PickupETAP50S = percentile(r.eta, 50).Seconds()
	s.RefusedP50MS, s.RefusedP99MS = ms(percentile(r.refusals, 50)), ms(percentile(r.refusals, 99))
	s.PickupMeanS, s.PickupP95S, s.PickupP99S = pickupSummary(r.drives)
	s.TripsPerDriverCV = spread(r.trips, r.drivers)
	if len(r.etaErrors) > 0 {
		abs := make([]float64, len(r.etaErrors))
		for i, e := range r.etaErrors {
			abs[i] = math.Abs(e)
		}
		s.PickupETAErrorP50, s.PickupETAAbsErrorP50 = median(r.etaErrors), median(abs)
	}
	return s
}

// final is the run's summary: a snapshot with the trip ids.
func (r *recorder) final() Stats {
	s := r.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	s.TripIDs = slices.Sorted(maps.Keys(r.requested))
	return s
}

// spread is the coefficient of variation of counts over n drivers (those
// not in counts have 0).
func spread(counts map[string]int, n int) float64 {
	n = max(n, len(counts))
	if n == 0 {
		return 0
	}
	var sum, sq float64
	for _, c := range counts {
		sum += float64(c)
		sq += float64(c) * float64(c)
	}
	mean := sum / float64(n)
	if mean == 0 {
		return 0
	}
	return math.Sqrt(max(sq/float64(n)-mean*mean, 0)) / mean
}

// median is the nearest-rank 50th percentile.
func median(xs []float64) float64 {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return sorted[(len(sorted)+1)/2-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile is the nearest-rank percentile; 0 for no samples.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[max(nearestRank(p, len(sorted))-1, 0)]
}

// nearestRank is the 1-based rank of the p-th percentile of n samples.
func nearestRank(p, n int) int { return (p*n + 99) / 100 }

// pickupSummary is the mean, p95 and p99 of pickup drives, in seconds
// (zeros for none).
func pickupSummary(drives []time.Duration) (mean, p95, p99 float64) {
	if len(drives) == 0 {
		return 0, 0, 0
	}
	var sum time.Duration
	for _, d := range drives {
		sum += d
	}
	return (sum / time.Duration(len(drives))).Seconds(), percentile(drives, 95).Seconds(), percentile(drives, 99).Seconds()
}
