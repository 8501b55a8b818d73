package matching

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/trip/tripclient"
	"go.opentelemetry.io/otel/trace"
)

// DispatchMode is how a worker matches requests to drivers.
type DispatchMode string

// Dispatch modes.
const (
	// ModeGreedy offers each trip to its best candidate on arrival, one
	// driver at a time (the offer cascade).
	ModeGreedy DispatchMode = "greedy"
	// ModeBatched gathers the open requests and available drivers of a
	// window and solves them together (exact min-cost assignment), then
	// offers in parallel.
	ModeBatched DispatchMode = "batched"
)

// DispatchModes lists the modes, as --dispatch-mode takes them.
var DispatchModes = []DispatchMode{ModeGreedy, ModeBatched}

// hostIO is the I/O the dispatch host asks for. The engine does it against
// the index, its peers, the drivers' gateways and the trip store; the
// deterministic tests fake it. Methods may block on the network: the host
// calls them outside its lock, through its runner, and takes their
// outcomes back as events.
type hostIO interface {
	// begin opens the trip's dispatch (its span); the context carries it
	// and ends when the dispatch does.
	begin(r *run) context.Context
	// finished closes the dispatch with its outcome.
	finished(r *run, outcome string)
	// search ranks the limit nearest eligible drivers within radius of
	// the pickup by road ETA (limit 0: the engine's K), across partition
	// borders, excluding the drivers given (a greedy cascade's
	// candidates, a batch window's cost row). A driver
	// another worker indexes may be offered by both: the driver's gateway
	// refuses the second offer (sendOffer: errDriverBusy).
	search(ctx context.Context, r *run, radius float64, limit int, exclude map[string]struct{}) []dispatch.Ranked
	// sendOffer reserves the driver on this worker and pushes the offer.
	sendOffer(ctx context.Context, trip *commonv1.Trip, a dispatch.SendOffer) (*pendingOffer, error)
	// closeOffer ends an offer that was delivered: tells the driver if
	// end.notify is set, then releases the reservation.
	closeOffer(r *run, o *pendingOffer, end offerEnd)
	// assign commits the trip to the driver (the trip store re-checks);
	// after is the ride a driver carrying a rider finishes first (chained
	// supply), or "".
	assign(ctx context.Context, tripID, driverID, after string) (*commonv1.Trip, error)
	// tripGone reports whether the trip left REQUESTED.
	tripGone(ctx context.Context, tripID string) bool
	// giveUp records that the dispatch found no driver.
	giveUp(ctx context.Context, r *run, reason dispatch.Reason)
	// held records that a window held the request for a better match
	// than driverID. h.mu held: it must not block.
	held(r *run, driverID string)
}

// offerEnd is how an offer ended.
type offerEnd struct {
	outcome   string                // the offer span's and metric's outcome
	notify    driverv1.OfferOutcome // pushed to the driver first, if set
	available bool                  // the driver goes back into searches at once
	assigned  bool                  // the driver took the trip (now busy)
}

// Offer endings.
var (
	endExpired   = offerEnd{outcome: "expired", notify: driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, available: true}
	endDeclined  = offerEnd{outcome: "declined", available: true}
	endAccepted  = offerEnd{outcome: "accepted", assigned: true}
	endLostRace  = offerEnd{outcome: "lost_race", available: true}
	endWithdrawn = offerEnd{outcome: "withdrawn", notify: driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, available: true}
)

// run is one trip's dispatch in flight on this worker. The host's lock
// guards every field after creation.
type run struct {
	trip *commonv1.Trip
	// pickup and partition are the trip's pickup, converted once.
	pickup    geo.LatLng
	partition matchingapi.Partition
	parent    trace.SpanContext // the Dispatch call's span, if any
	deadline  time.Time
	seq       uint64    // arrival order: batch rows and shutdown go by it
	arrived   time.Time // when the rider asked (the trip's creation), at the latest when the host took it

	ctx    context.Context
	cancel context.CancelFunc
	done   bool
	timer  dispatch.Timer
	wake   time.Time // when timer fires (zero: no timer)
	armed  uint64    // the current timer's generation: an older one that fires anyway is ignored

	// Greedy: the cascade decides.
	cascade *dispatch.Cascade
	// Batched: the run's own small state machine.
	open     bool                // waiting for the next window
	retry    bool                // returned by an offer, not solved since: the follow-up window takes it
	excluded map[string]struct{} // drivers that declined, lapsed or lost
	expires  time.Time           // of the offer out
	found    bool                // a window ever had a driver for it
	offers   int

	pushing string        // driver whose offer is being pushed
	early   *offerReply   // a reply that overtook its push's outcome
	offer   *pendingOffer // the offer out, once delivered
	waiting *offerReply   // the accept whose assignment is being committed
	// assigned is the driver the trip went to, once committed.
	assigned string
}

// host runs the dispatches of one worker. Every decision happens under mu,
// in reaction to an event: a trip submitted, a search answered, an offer
// delivered, a driver's reply, an assignment's outcome, a timer of the
// injected clock. The I/O the decisions ask for runs outside the lock
// through run (goroutines in production; in tests, one at a time), and its
// outcome comes back as the next event. With a fake clock and a serial
// runner a whole timeline is therefore a function of its inputs.
type host struct {
	io     hostIO
	clock  dispatch.TimerClock
	run    func(job func())
	mode   DispatchMode
	window time.Duration
	cfg    func(left time.Duration) dispatch.CascadeConfig
	offer  time.Duration // offer timeout (batched)
	radius float64       // batched search radius
	limit  int           // batched options per request
	batch  dispatch.BatchConfig
	// followUp is how soon a request an offer returned is solved again
	// (0: at the next full window).
	followUp time.Duration
	// windowMax > window: adaptive windows, from window (few requests
	// open) to windowMax (windowLoad or more open).
	windowMax  time.Duration
	windowLoad int
	// holdPickup, holdMax, longPickup: see hostConfig.
	holdPickup, holdMax time.Duration
	longPickup          float64 // seconds

	mu          sync.Mutex
	runs        map[string]*run
	seq         uint64
	stopped     bool
	windowTimer dispatch.Timer
	windowStart time.Time // when the window being gathered opened
	extended    bool      // the window was lengthened (adaptive)
	followTimer dispatch.Timer
	solving     bool
	// againWindow and againFollow: a window or follow-up closed while
	// the last one was being solved; it is gathered as soon as that one
	// is planned.
	againWindow, againFollow bool
}

// hostConfig is what a host needs from the engine's configuration.
type hostConfig struct {
	mode         DispatchMode
	window       time.Duration
	offerTimeout time.Duration
	maxRadius    float64
	candidates   int           // batched options per request
	followUp     time.Duration // batched follow-up window (0: none)
	windowMax    time.Duration // adaptive windows up to this (≤ window: fixed)
	windowLoad   int           // open requests at which an adaptive window is windowMax
	// holdPickup and holdMax: a batched request whose planned pickup is
	// holdPickup or longer waits for the next window instead, as long as
	// it will then have waited at most holdMax (0: never held).
	holdPickup time.Duration
	holdMax    time.Duration
	// longPickup, if positive, is the pickup time that costs a window
	// twice its seconds (see windowCost; 0: a pickup costs its seconds).
	longPickup time.Duration
	cascade    func(left time.Duration) dispatch.CascadeConfig
}

func newHost(io hostIO, clock dispatch.TimerClock, runner func(func()), cfg hostConfig) *host {
	return &host{
		io: io, clock: clock, run: runner, mode: cfg.mode, window: cfg.window, cfg: cfg.cascade,
		offer: cfg.offerTimeout, radius: cfg.maxRadius, limit: cfg.candidates, followUp: cfg.followUp,
		windowMax: cfg.windowMax, windowLoad: max(cfg.windowLoad, 1), holdPickup: cfg.holdPickup, holdMax: cfg.holdMax, longPickup: cfg.longPickup.Seconds(),
		batch: dispatch.DefaultBatchConfig(), runs: map[string]*run{},
	}
}

// jobs collects the I/O one event asks for; the event's handler runs them
// after unlocking.
type jobs []func()

func (h *host) unlockAndRun(js *jobs) {
	h.mu.Unlock()
	for _, j := range *js {
		h.run(j)
	}
}

// inFlight is the number of dispatches running.
func (h *host) inFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.runs)
}

// submit starts dispatching r's trip unless it is already in flight here.
// running reports whether the trip is being dispatched here.
func (h *host) running(tripID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.runs[tripID]
	return ok
}

func (h *host) submit(r *run) bool {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	if _, ok := h.runs[r.trip.GetId()]; ok || h.stopped {
		return false
	}
	ctx := h.io.begin(r)
	r.ctx, r.cancel = context.WithCancel(ctx)
	h.seq++
	r.seq = h.seq
	h.runs[r.trip.GetId()] = r
	now := h.clock.Now()
	// A recovered trip has waited since the rider asked, not since this
	// worker took it.
	r.arrived = now
	if c := r.trip.GetCreatedAt(); c.IsValid() && c.AsTime().Before(now) {
		r.arrived = c.AsTime()
	}
	if h.mode == ModeBatched {
		r.open, r.excluded = true, map[string]struct{}{}
		h.rearm(r, now)
		h.ensureWindow()
		return true
	}
	c, err := dispatch.NewCascade(r.trip.GetId(), h.cfg(max(r.deadline.Sub(now), time.Millisecond)))
	if err != nil { // the engine's config was validated: not reached
		h.finish(r, "bad_config")
		return true
	}
	r.cascade = c
	h.apply(r, c.Start(now), &js)
	return true
}

// apply performs a cascade's actions. h.mu held.
func (h *host) apply(r *run, acts []dispatch.Action, js *jobs) {
	for _, act := range acts {
		switch a := act.(type) {
		case dispatch.Search:
			*js = append(*js, func() {
				ranked := h.io.search(r.ctx, r, a.Radius, 0, a.Exclude)
				h.event(r, func(now time.Time, js *jobs) {
					h.apply(r, r.cascade.CandidatesFound(now, a.Seq, ranked), js)
				})
			})
		case dispatch.SendOffer:
			h.push(r, a, js)
		case dispatch.RevokeOffer:
			if r.offer != nil && r.offer.candidate.ID == a.DriverID {
				h.close(r, endExpired, js)
			}
		case dispatch.Assign:
			h.commit(r, a.DriverID, js)
		case dispatch.GiveUp:
			*js = append(*js, func() { h.io.giveUp(r.ctx, r, a.Reason) })
			h.finish(r, string(a.Reason))
		}
	}
	if !r.done {
		h.rearm(r, h.clock.Now())
	}
}

// event runs fn on r under the lock unless r has finished or the host
// stopped, then the jobs it asks for.
func (h *host) event(r *run, fn func(now time.Time, js *jobs)) {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	if r.done || h.stopped {
		return
	}
	fn(h.clock.Now(), &js)
}

// push sends an offer. h.mu held.
func (h *host) push(r *run, a dispatch.SendOffer, js *jobs) {
	r.pushing = a.Candidate.ID
	r.offers++
	*js = append(*js, func() {
		o, err := h.io.sendOffer(r.ctx, r.trip, a)
		h.pushed(r, a.Candidate, o, err)
	})
}

// pushed takes the outcome of an offer's push.
func (h *host) pushed(r *run, c dispatch.Ranked, o *pendingOffer, err error) {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	now := h.clock.Now()
	current := r.pushing == c.ID
	if current {
		r.pushing = ""
	}
	stale := r.done || h.stopped || !current
	if !stale && r.cascade != nil {
		stale = r.cascade.State() != dispatch.StateOffering || r.cascade.Driver() != c.ID
	}
	if stale {
		// The offer lapsed or the dispatch ended while it was being
		// pushed: take it back.
		if r.early != nil && r.early.driverID == c.ID {
			r.early.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil)
			r.early = nil
		}
		if err == nil {
			js = append(js, func() { h.io.closeOffer(r, o, endExpired) })
		}
		return
	}
	if err != nil {
		if r.cascade != nil {
			h.apply(r, r.cascade.Reply(now, c.ID, false), &js)
		} else {
			if !errors.Is(err, errDriverBusy) {
				r.excluded[c.ID] = struct{}{}
			}
			h.reopen(r, now, &js)
		}
		return
	}
	r.offer = o
	if early := r.early; early != nil {
		r.early = nil
		h.answer(r, *early, now, &js)
	}
}

// close ends the offer out. h.mu held.
func (h *host) close(r *run, end offerEnd, js *jobs) {
	o := r.offer
	r.offer = nil
	*js = append(*js, func() { h.io.closeOffer(r, o, end) })
}

// commit assigns the trip to the driver who accepted. h.mu held.
func (h *host) commit(r *run, driverID string, js *jobs) {
	actx := r.ctx
	if r.waiting != nil {
		// The accept's trace: offer → driver's reply → assignment.
		actx = trace.ContextWithSpanContext(r.ctx, trace.SpanContextFromContext(r.waiting.ctx))
	}
	after := ""
	if r.offer != nil && r.offer.candidate.ID == driverID {
		after = r.offer.candidate.After
	}
	*js = append(*js, func() {
		trip, err := h.io.assign(actx, r.trip.GetId(), driverID, after)
		gone := err != nil && errors.Is(err, tripclient.ErrTripNotRequested) && h.io.tripGone(r.ctx, r.trip.GetId())
		h.committed(r, driverID, trip, err, gone)
	})
}

// committed takes the outcome of an assignment. Unlike other events it is
// handled after the dispatch ended too: the driver's reply is waiting and
// the reservation must go.
func (h *host) committed(r *run, driverID string, trip *commonv1.Trip, err error, gone bool) {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	now := h.clock.Now()
	waiting := r.waiting
	r.waiting = nil
	if err == nil {
		r.assigned = driverID
		waiting.answer(driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED, trip)
		if r.offer != nil {
			h.close(r, endAccepted, &js)
		}
		if !r.done {
			h.finish(r, "assigned")
		}
		return
	}
	waiting.answer(driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, nil)
	if r.offer != nil {
		h.close(r, endLostRace, &js)
	}
	if r.done || h.stopped {
		return
	}
	if gone {
		h.finish(r, "trip_gone")
		return
	}
	if r.cascade != nil {
		h.apply(r, r.cascade.AssignResult(now, driverID, err), &js)
		return
	}
	r.excluded[driverID] = struct{}{}
	h.reopen(r, now, &js)
}

// reply routes a driver's answer to the dispatch that made the offer; it
// reports false if no dispatch of the trip runs here.
func (h *host) reply(tripID string, rep offerReply) bool {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	r, ok := h.runs[tripID]
	if !ok || h.stopped {
		return false
	}
	h.answer(r, rep, h.clock.Now(), &js)
	return true
}

// answer handles a reply to r. h.mu held.
func (h *host) answer(r *run, rep offerReply, now time.Time, js *jobs) {
	if r.offer == nil || rep.offerID != r.offer.id || rep.driverID != r.offer.candidate.ID {
		if r.offer == nil && r.pushing == rep.driverID && r.early == nil {
			r.early = &rep // the push's outcome is still on its way
			return
		}
		rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil)
		return
	}
	if r.cascade != nil {
		acts := r.cascade.Reply(now, rep.driverID, rep.accept)
		switch {
		case !rep.accept:
			rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_DECLINED, nil)
			h.close(r, endDeclined, js)
		case !slices.ContainsFunc(acts, func(a dispatch.Action) bool { _, ok := a.(dispatch.Assign); return ok }):
			rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil) // it lapsed
		default:
			r.waiting = &rep
		}
		h.apply(r, acts, js)
		return
	}
	switch {
	case !now.Before(r.expires):
		rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil)
		h.tick(r, now, js)
	case !rep.accept:
		rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_DECLINED, nil)
		r.excluded[rep.driverID] = struct{}{}
		h.close(r, endDeclined, js)
		h.reopen(r, now, js)
	default:
		r.waiting = &rep
		h.rearm(r, now) // nothing lapses while the commit decides
		h.commit(r, rep.driverID, js)
	}
}

// cancel stops the trip's dispatch (the rider cancelled).
func (h *host) cancel(tripID string) bool {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	r, ok := h.runs[tripID]
	if !ok {
		return false
	}
	h.abort(r, &js)
	return true
}

// abort withdraws r's offer and ends it without recording anything on the
// trip. An assignment in flight is left to the trip store, which orders it
// against the cancel. h.mu held.
func (h *host) abort(r *run, js *jobs) {
	if r.cascade != nil {
		r.cascade.Cancel(h.clock.Now())
	}
	if r.offer != nil && r.waiting == nil {
		h.close(r, endWithdrawn, js)
	}
	h.finish(r, "cancelled")
}

// finish ends r. h.mu held.
func (h *host) finish(r *run, outcome string) {
	r.done = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	delete(h.runs, r.trip.GetId())
	if r.early != nil {
		r.early.answer(driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, nil)
		r.early = nil
	}
	h.io.finished(r, outcome)
	r.cancel()
}

// stop ends every dispatch (the worker stops; recovery on the partition's
// next owner re-dispatches their trips) and every timer.
func (h *host) stop() {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	if h.stopped {
		return
	}
	h.stopped = true
	if h.windowTimer != nil {
		h.windowTimer.Stop()
		h.windowTimer = nil
	}
	if h.followTimer != nil {
		h.followTimer.Stop()
		h.followTimer = nil
	}
	rs := make([]*run, 0, len(h.runs))
	for _, r := range h.runs {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *run) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range rs {
		h.abort(r, &js)
	}
}

// rearm sets r's timer to its next wake-up. h.mu held.
func (h *host) rearm(r *run, now time.Time) {
	var at time.Time
	switch {
	case r.cascade != nil:
		at = r.cascade.NextWake()
	case r.waiting != nil: // assigning: the commit decides
	case r.offer != nil || r.pushing != "":
		at = earliestOf(r.expires, r.deadline)
	default:
		at = r.deadline
	}
	if at.Equal(r.wake) && r.timer != nil {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.armed++
	r.wake = at
	if at.IsZero() {
		return
	}
	gen := r.armed
	r.timer = h.clock.AfterFunc(at.Sub(now), func() {
		h.event(r, func(now time.Time, js *jobs) {
			if r.armed != gen {
				return // replaced while this call was on its way (the real clock's AfterFunc)
			}
			r.timer, r.wake = nil, time.Time{}
			h.tick(r, now, js)
		})
	})
}

func earliestOf(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// tick advances r's time: offer timeouts and the deadline. h.mu held.
func (h *host) tick(r *run, now time.Time, js *jobs) {
	if r.cascade != nil {
		h.apply(r, r.cascade.Tick(now), js)
		return
	}
	if r.waiting != nil {
		return
	}
	if !now.Before(r.deadline) {
		if r.offer != nil {
			h.close(r, endExpired, js)
		}
		reason := dispatch.ReasonDeadlineExceeded
		if !r.found {
			reason = dispatch.ReasonNoCandidates
		}
		*js = append(*js, func() { h.io.giveUp(r.ctx, r, reason) })
		h.finish(r, string(reason))
		return
	}
	if (r.offer != nil || r.pushing != "") && !now.Before(r.expires) {
		if r.offer != nil {
			r.excluded[r.offer.candidate.ID] = struct{}{}
			h.close(r, endExpired, js)
		} else {
			// Still being pushed: the push's outcome finds it stale and
			// takes the offer back.
			r.excluded[r.pushing] = struct{}{}
			r.pushing = ""
		}
		h.reopen(r, now, js)
		return
	}
	h.rearm(r, now)
}

// reopen returns a batched run, whose offer ended without a driver, to
// the follow-up window (or the next window if there is none). h.mu held.
func (h *host) reopen(r *run, now time.Time, js *jobs) {
	if !now.Before(r.deadline) {
		h.tick(r, now, js)
		return
	}
	r.open, r.retry = true, true
	h.rearm(r, now)
	if h.followUp > 0 {
		h.ensureFollowUp()
		return
	}
	h.ensureWindow()
}

// ensureFollowUp schedules a follow-up window if none is. h.mu held.
func (h *host) ensureFollowUp() {
	if h.followTimer != nil || h.stopped {
		return
	}
	h.followTimer = h.clock.AfterFunc(h.followUp, h.closeFollowUp)
}

// closeFollowUp solves the requests offers returned since they were last
// solved, against the drivers available now. Requests waiting for their
// first window stay for it.
func (h *host) closeFollowUp() {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	h.followTimer = nil
	if h.stopped {
		return
	}
	h.gather(true, &js)
}

// ensureWindow schedules the next window if none is. h.mu held.
func (h *host) ensureWindow() {
	if h.windowTimer != nil || h.stopped {
		return
	}
	h.windowStart, h.extended = h.clock.Now(), false
	h.windowTimer = h.clock.AfterFunc(h.window, h.closeWindow)
}

// windowLength is how long an adaptive window with open requests open
// runs: window for a lone request, growing linearly to windowMax at
// windowLoad.
func (h *host) windowLength(open int) time.Duration {
	if h.windowMax <= h.window || open <= 1 {
		return h.window
	}
	f := 1.0
	if h.windowLoad > 1 {
		f = min(1, float64(open-1)/float64(h.windowLoad-1))
	}
	return h.window + time.Duration(f*float64(h.windowMax-h.window))
}

// windowRow is one open request as a window saw it.
type windowRow struct {
	r       *run
	exclude map[string]struct{}
}

// closeWindow solves the requests open at the end of a window against the
// drivers available then. One window covers every partition the worker
// owns: options are the nearest drivers only, so far-apart partitions do
// not interact and one exact solve equals one per partition.
func (h *host) closeWindow() {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	h.windowTimer = nil
	if h.stopped {
		return
	}
	if h.windowMax > h.window && !h.extended {
		// Adaptive: the window has run its shortest; under load it
		// gathers longer (once: then it closes).
		open := 0
		for _, r := range h.runs {
			if r.open {
				open++
			}
		}
		if left := h.windowLength(open) - h.clock.Now().Sub(h.windowStart); left > 0 {
			h.extended = true
			h.windowTimer = h.clock.AfterFunc(left, h.closeWindow)
			return
		}
	}
	h.gather(false, &js)
}

// gather starts solving the open requests (followUp: only those returned
// by an offer since they were last solved), or, if the last window is
// still being solved, has them gathered as soon as it is planned. h.mu
// held.
func (h *host) gather(followUp bool, js *jobs) {
	if h.solving {
		if followUp {
			h.againFollow = true
		} else {
			h.againWindow = true
		}
		return
	}
	var rows []windowRow
	for _, r := range h.runs {
		if r.open && (r.retry || !followUp) {
			rows = append(rows, windowRow{r: r, exclude: copySet(r.excluded)})
		}
	}
	if len(rows) == 0 {
		return
	}
	slices.SortFunc(rows, func(a, b windowRow) int { return cmp.Compare(a.r.seq, b.r.seq) })
	h.solving = true
	*js = append(*js, func() { h.solve(rows) })
}

func copySet(s map[string]struct{}) map[string]struct{} {
	out := make(map[string]struct{}, len(s))
	for k := range s {
		out[k] = struct{}{}
	}
	return out
}

// solve builds a window's cost matrix (road ETAs of each request's nearby
// drivers), solves it exactly and takes the plan back to the host.
func (h *host) solve(rows []windowRow) {
	reqs := make([]dispatch.BatchRequest, len(rows))
	ranked := make(map[string]dispatch.Ranked)
	for i, row := range rows {
		rs := h.io.search(row.r.ctx, row.r, h.radius, h.limit, row.exclude)
		if len(rs) > h.limit {
			rs = rs[:h.limit]
		}
		reqs[i] = dispatch.BatchRequest{TripID: row.r.trip.GetId(), Options: dispatch.BatchOptionsFromRanked(rs)}
		for k := range reqs[i].Options {
			reqs[i].Options[k].Cost = h.windowCost(reqs[i].Options[k].Cost)
		}
		for _, c := range rs {
			ranked[row.r.trip.GetId()+"\x00"+c.ID] = c
		}
	}
	plan, err := dispatch.AssignBatch(reqs, h.batch)
	h.planned(rows, reqs, ranked, plan, err)
}

// windowCost is what a window's assignment minimises for a pickup of s
// seconds: s, or with longPickup set s·(1 + s/longPickup), so a pickup
// longPickup long counts twice its seconds and the window gives up a
// little on short pickups for fewer long ones (the offers keep the
// estimate itself).
func (h *host) windowCost(s float64) float64 {
	if h.longPickup <= 0 {
		return s
	}
	return s * (1 + s/h.longPickup)
}

// planned sends the offers of a window's plan, in parallel. Requests left
// without a driver stay open for the next window, until their deadline.
func (h *host) planned(rows []windowRow, reqs []dispatch.BatchRequest, ranked map[string]dispatch.Ranked, plan dispatch.BatchResult, err error) {
	h.mu.Lock()
	var js jobs
	defer h.unlockAndRun(&js)
	h.solving = false
	if h.stopped {
		return
	}
	now := h.clock.Now()
	if err != nil { // options come from the scorer: finite, ≥ 0
		plan = dispatch.BatchResult{}
	}
	for i, row := range rows {
		row.r.retry = false // solved since it came back: the next full window takes it
		if len(reqs[i].Options) > 0 {
			row.r.found = true
		}
	}
	for _, a := range plan.Assignments {
		r, ok := h.runs[a.TripID]
		if !ok || !r.open {
			continue // ended or cancelled while the window was solved
		}
		if _, ex := r.excluded[a.DriverID]; ex {
			continue
		}
		c := ranked[a.TripID+"\x00"+a.DriverID]
		if h.holds(r, c, now) {
			h.io.held(r, c.ID)
			continue // open: the next window solves it again
		}
		r.open = false
		r.expires = earliestOf(now.Add(h.offer), r.deadline)
		h.push(r, dispatch.SendOffer{TripID: a.TripID, Candidate: c, Expires: r.expires}, &js)
		h.rearm(r, now)
	}
	again, follow := h.againWindow, h.againFollow
	h.againWindow, h.againFollow = false, false
	switch {
	case again: // a full window covers the follow-up's requests too
		h.gather(false, &js)
	case follow:
		h.gather(true, &js)
	}
	for _, r := range h.runs {
		if r.open {
			h.ensureWindow()
			break
		}
	}
}

// holds reports whether a request planned to driver c waits for the next
// window instead: its pickup would be long, so supply near it is thin, and
// in the next window a nearer driver may have come free, or a request that
// arrives meanwhile may need c more while this one loses little by taking
// another far driver. It waits only while the next window, at its longest
// (adaptive windows stretch under load, and held requests count), still
// ends within holdMax of its arrival and leaves a whole offer timeout
// before its deadline. h.mu held.
func (h *host) holds(r *run, c dispatch.Ranked, now time.Time) bool {
	if h.holdPickup <= 0 || c.Score < h.holdPickup.Seconds() {
		return false
	}
	next := now.Add(max(h.window, h.windowMax))
	return !next.After(r.arrived.Add(h.holdMax)) && !next.Add(h.offer).After(r.deadline)
}

// validMode reports whether m is a dispatch mode.
func validMode(m DispatchMode) error {
	if slices.Contains(DispatchModes, m) {
		return nil
	}
	return fmt.Errorf("%w %q (want greedy or batched)", ErrBadMode, m)
}
