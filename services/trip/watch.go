package trip

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hexride/hexride/services/trip/store"
)

// hub is one instance's feed of committed trip events, fanned out to its
// watchers: one feed per instance, however many watchers. The feed is the
// trip event stream when the server has one (WithEventStream), else a poll
// of the shared event log. It runs while there are watchers and stops with
// the last one (or on close).
type hub struct {
	feed   feed
	buffer int
	log    *slog.Logger

	mu       sync.Mutex
	subs     map[*subscriber]struct{}
	running  bool
	gen      int // the running feed's generation; older feeds deliver nothing
	stopFeed func()
	closed   bool
	wg       sync.WaitGroup
}

// feed is a source of committed events.
type feed interface {
	// start primes the feed synchronously, so every event committed after
	// it returns is delivered, then calls deliver with batches in the
	// background until deliver returns false or stop is called; done is
	// closed once it has stopped calling deliver. A feed that cannot go on
	// calls fail (which ends its watches) and stops.
	start(ctx context.Context, deliver func([]store.Event) bool, fail func(error)) (stop func(), done <-chan struct{}, err error)
}

type subscriber struct {
	match func(store.Event) bool
	// ch holds pointers: a watcher's buffer is allocated whole, and an
	// Event is ~600 bytes (1024 of them were 0.6 MB per watch).
	ch     chan *store.Event
	gone   chan struct{} // closed when the hub drops the subscriber
	reason error
	once   sync.Once
}

func newHub(f feed, buffer int, log *slog.Logger) *hub {
	return &hub{feed: f, buffer: buffer, log: log, subs: map[*subscriber]struct{}{}}
}

// subscribe adds a watcher. When it starts the feed, it first primes it
// synchronously, so every event committed after subscribe returns is
// delivered.
func (h *hub) subscribe(ctx context.Context, match func(store.Event) bool) (*subscriber, error) {
	sub := &subscriber{match: match, ch: make(chan *store.Event, h.buffer), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errShuttingDown()
	}
	if !h.running {
		h.gen++
		gen := h.gen
		stop, done, err := h.feed.start(ctx,
			func(evs []store.Event) bool { return h.deliver(gen, evs) },
			func(err error) { h.fail(gen, err) })
		if err != nil {
			return nil, err
		}
		h.running, h.stopFeed = true, stop
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			<-done
		}()
	}
	h.subs[sub] = struct{}{}
	return sub, nil
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

func (h *hub) drop(sub *subscriber, reason error) {
	sub.once.Do(func() {
		sub.reason = reason
		close(sub.gone)
	})
	delete(h.subs, sub)
}

// deliver fans a batch out to the watchers; false stops the feed.
func (h *hub) deliver(gen int, evs []store.Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen || !h.running {
		return false
	}
	for i := range evs {
		ev := &evs[i] // shared read-only by every watcher it matches
		for sub := range h.subs {
			if !sub.match(*ev) {
				continue
			}
			select {
			case sub.ch <- ev:
			default:
				h.drop(sub, errFellBehind())
			}
		}
	}
	if len(h.subs) == 0 {
		// The last watcher left: stop the feed. The next subscribe
		// starts (and primes) a fresh one.
		h.running = false
		return false
	}
	return true
}

// fail ends every watch of feed generation gen with err (the feed broke;
// watchers watch again and start a fresh one).
func (h *hub) fail(gen int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen || !h.running {
		return
	}
	for sub := range h.subs {
		h.drop(sub, err)
	}
	h.running = false
}

// close ends every watch and waits for the feed to stop.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.running = false
	stop := h.stopFeed
	for sub := range h.subs {
		h.drop(sub, errShuttingDown())
	}
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	h.wg.Wait()
}

// pollFeed tails the shared event log (store.Tailer) every interval.
type pollFeed struct {
	src      store.EventSource
	interval time.Duration
	lookback time.Duration
	log      *slog.Logger
}

func (f pollFeed) start(ctx context.Context, deliver func([]store.Event) bool, _ func(error)) (func(), <-chan struct{}, error) {
	tailer := store.NewTailer(f.src, f.lookback)
	if _, err := tailer.Poll(ctx); err != nil {
		return nil, nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		ticker := time.NewTicker(f.interval)
		defer ticker.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-ticker.C:
			}
			evs, err := tailer.Poll(loopCtx)
			if err != nil && loopCtx.Err() == nil {
				f.log.Warn("trip: watch poll failed", "err", err)
			}
			if !deliver(evs) {
				return
			}
		}
	}()
	return cancel, done, nil
}

// streamFeed reads the trip event stream with an ordered consumer from
// the moment it starts (DeliverNew). JetStream fills any gap itself: after
// a reconnect the ordered consumer resumes from the last stream sequence
// it delivered, so no store read is needed. Events re-published after the
// stream's duplicate window are dropped by trip version.
type streamFeed struct {
	js  jetstream.JetStream
	log *slog.Logger
}

// streamFeedTimeout bounds creating the consumer.
const streamFeedTimeout = 5 * time.Second

func (f streamFeed) start(ctx context.Context, deliver func([]store.Event) bool, fail func(error)) (func(), <-chan struct{}, error) {
	ctx, cancel := context.WithTimeout(ctx, streamFeedTimeout)
	defer cancel()
	if _, err := EnsureStream(ctx, f.js, StreamConfig(jetstream.FileStorage)); err != nil {
		f.log.Warn("trip: watch: event stream", "err", err)
		return nil, nil, errStreamUnavailable()
	}
	cons, err := f.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{SubjectAll},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		f.log.Warn("trip: watch: ordered consumer", "err", err)
		return nil, nil, errStreamUnavailable()
	}
	var (
		quit     = make(chan struct{})
		quitOnce sync.Once
		latest   = newVersionFilter()
	)
	stop := func() { quitOnce.Do(func() { close(quit) }) }
	// The handler runs on one goroutine per consumer, in stream order.
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := eventFromStream(msg.Data())
		if err != nil {
			f.log.Warn("trip: watch: undecodable stream message", "subject", msg.Subject(), "err", err)
			return
		}
		if !latest.fresh(ev) {
			return
		}
		if !deliver([]store.Event{ev}) {
			stop()
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		f.log.Debug("trip: watch: consumer", "err", err)
	}))
	if err != nil {
		f.log.Warn("trip: watch: consume", "err", err)
		return nil, nil, errStreamUnavailable()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-quit:
			cc.Stop()
			<-cc.Closed()
		case <-cc.Closed():
			// The consumer ended by itself (the connection closed):
			// watchers must watch again.
			select {
			case <-quit:
			default:
				fail(errStreamUnavailable())
			}
		}
	}()
	return stop, done, nil
}

// versionFilter drops stream events whose trip version was already
// delivered (a re-publish that JetStream's duplicate window no longer
// catches). Entries of trips quiet for versionFilterTTL are forgotten.
type versionFilter struct {
	last  map[uuid.UUID]versionSeen
	prune time.Time
}

type versionSeen struct {
	version int64
	at      time.Time
}

const versionFilterTTL = 10 * time.Minute

func newVersionFilter() *versionFilter {
	return &versionFilter{last: map[uuid.UUID]versionSeen{}, prune: time.Now().Add(time.Minute)}
}

func (v *versionFilter) fresh(ev store.Event) bool {
	now := time.Now()
	if now.After(v.prune) {
		for id, s := range v.last {
			if now.Sub(s.at) > versionFilterTTL {
				delete(v.last, id)
			}
		}
		v.prune = now.Add(time.Minute)
	}
	if s, ok := v.last[ev.TripID]; ok && ev.Version <= s.version {
		return false
	}
	v.last[ev.TripID] = versionSeen{ev.Version, now}
	return true
}
