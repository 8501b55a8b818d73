package trip

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hexride/hexride/services/trip/store"
)

// hub is one instance's tail of the shared event log, fanned out to its
// watchers: one poll loop per instance, however many watchers. The loop runs
// while there are watchers and stops with the last one (or on close).
type hub struct {
	src      store.EventSource
	interval time.Duration
	lookback time.Duration
	buffer   int
	log      *slog.Logger

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	running bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
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

func newHub(src store.EventSource, interval, lookback time.Duration, buffer int, log *slog.Logger) *hub {
	return &hub{
		src: src, interval: interval, lookback: lookback, buffer: buffer, log: log,
		subs: map[*subscriber]struct{}{}, stop: make(chan struct{}),
	}
}

// subscribe adds a watcher. When it starts the poll loop, it first primes
// the tailer synchronously, so every event committed after subscribe
// returns is delivered.
func (h *hub) subscribe(ctx context.Context, match func(store.Event) bool) (*subscriber, error) {
	sub := &subscriber{match: match, ch: make(chan *store.Event, h.buffer), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errShuttingDown()
	}
	if !h.running {
		tailer := store.NewTailer(h.src, h.lookback)
		if _, err := tailer.Poll(ctx); err != nil {
			return nil, err
		}
		h.running = true
		h.wg.Add(1)
		go h.loop(tailer)
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

func (h *hub) loop(tailer *store.Tailer) {
	defer h.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ticker := time.NewTicker(h.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		evs, err := tailer.Poll(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Warn("trip: watch poll failed", "err", err)
		}
		h.mu.Lock()
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
			// The last watcher left: stop polling. The next subscribe
			// starts a fresh loop (and primes a fresh tailer).
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
}

// close ends every watch and waits for the poll loop to stop.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.stop)
	for sub := range h.subs {
		h.drop(sub, errShuttingDown())
	}
	h.mu.Unlock()
	h.wg.Wait()
}
