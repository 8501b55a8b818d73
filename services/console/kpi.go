package console

import (
	"slices"
	"sync"
	"time"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
)

// kpisJSON are the dispatcher's headline numbers.
type kpisJSON struct {
	// RequestsPerMin counts trips created in the last minute.
	RequestsPerMin int `json:"requests_per_min"`
	// MatchRate is, of the trips created in the window that reached an
	// outcome (a driver assigned, no driver found, or cancelled before
	// assignment), the fraction that got a driver; null before any did.
	MatchRate *float64 `json:"match_rate"`
	// TimeToMatchP50/P95 are seconds from request to first assignment over
	// the window; null before any match.
	TimeToMatchP50 *float64 `json:"time_to_match_p50_s"`
	TimeToMatchP95 *float64 `json:"time_to_match_p95_s"`
	Matched        int      `json:"matched"`
	Unmatched      int      `json:"unmatched"`
	Pending        int      `json:"pending"`
	WindowSeconds  int      `json:"window_s"`
	DriversOnline  int64    `json:"drivers_online"`
	DriversBusy    int64    `json:"drivers_busy"`
	// Workers sums the matching workers' counters (offers accepted,
	// declined, expired…).
	Workers workerStats `json:"workers"`
}

type outcome uint8

const (
	pending outcome = iota
	matched
	unmatched
)

type tripRecord struct {
	id       string
	created  time.Time
	assigned time.Time
	outcome  outcome
}

// window remembers the recent trips' request and first-assignment times,
// fed by the trip watch; bounded by age and by count.
type window struct {
	mu    sync.Mutex
	span  time.Duration
	max   int
	trips map[string]*tripRecord
	order []*tripRecord // by first sight; oldest first
}

func newWindow(span time.Duration, max int) *window {
	return &window{span: span, max: max, trips: map[string]*tripRecord{}}
}

// observe records one trip event.
func (w *window) observe(ev *commonv1.TripEvent, now time.Time) {
	t := ev.GetTrip()
	created := t.GetCreatedAt().AsTime()
	if t.GetCreatedAt() == nil {
		if ev.GetType() != commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED {
			return
		}
		created = ev.GetOccurredAt().AsTime()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prune(now)
	if created.Before(now.Add(-w.span)) {
		return
	}
	r, ok := w.trips[ev.GetTripId()]
	if !ok {
		r = &tripRecord{id: ev.GetTripId(), created: created}
		w.trips[r.id] = r
		w.order = append(w.order, r)
		if len(w.order) > w.max {
			delete(w.trips, w.order[0].id)
			w.order = w.order[1:]
		}
	}
	if r.outcome != pending {
		return
	}
	switch ev.GetType() {
	case commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED:
		r.outcome = matched
		r.assigned = ev.GetOccurredAt().AsTime()
		if a := t.GetAssignedAt(); a != nil {
			r.assigned = a.AsTime()
		}
	case commonv1.TripEventType_TRIP_EVENT_TYPE_NO_DRIVER_FOUND, commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED:
		r.outcome = unmatched
	}
}

func (w *window) prune(now time.Time) {
	cut := now.Add(-w.span)
	i := 0
	for i < len(w.order) && w.order[i].created.Before(cut) {
		delete(w.trips, w.order[i].id)
		i++
	}
	if i > 0 {
		w.order = slices.Delete(w.order, 0, i)
	}
}

// compute summarises the window at now.
func (w *window) compute(now time.Time) kpisJSON {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prune(now)
	k := kpisJSON{WindowSeconds: int(w.span / time.Second)}
	minuteAgo, cut := now.Add(-time.Minute), now.Add(-w.span)
	var waits []float64
	for _, r := range w.order {
		if r.created.Before(cut) {
			continue // first seen late; pruned once older ones go
		}
		if !r.created.Before(minuteAgo) {
			k.RequestsPerMin++
		}
		switch r.outcome {
		case matched:
			k.Matched++
			waits = append(waits, max(0, r.assigned.Sub(r.created).Seconds()))
		case unmatched:
			k.Unmatched++
		default:
			k.Pending++
		}
	}
	if n := k.Matched + k.Unmatched; n > 0 {
		rate := float64(k.Matched) / float64(n)
		k.MatchRate = &rate
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		p50, p95 := quantile(waits, 0.50), quantile(waits, 0.95)
		k.TimeToMatchP50, k.TimeToMatchP95 = &p50, &p95
	}
	return k
}

// quantile of sorted xs by the nearest-rank method.
func quantile(xs []float64, q float64) float64 {
	i := int(float64(len(xs))*q+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
