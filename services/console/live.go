package console

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

// keepAlive is how often an idle live stream gets a comment line (proxies
// close silent connections).
const keepAlive = 15 * time.Second

// hub fans live messages out to the connected browsers. A browser that
// falls ClientBuffer messages behind is disconnected (EventSource
// reconnects and starts again from a fresh snapshot).
type hub struct {
	mu     sync.Mutex
	buf    int
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch chan []byte // closed when the hub drops the subscriber
}

func newHub(buf int) *hub { return &hub{buf: buf, subs: map[*subscriber]struct{}{}} }

// subscribe adds a subscriber; ok is false once the hub is closed.
func (h *hub) subscribe() (s *subscriber, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	s = &subscriber{ch: make(chan []byte, h.buf)}
	h.subs[s] = struct{}{}
	return s, true
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// broadcast queues one server-sent event for every subscriber.
func (h *hub) broadcast(frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- frame:
		default: // too slow: drop it, it reconnects
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// close disconnects every subscriber and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}

// sseFrame encodes one server-sent event.
func sseFrame(event string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(data) + len(event) + 16)
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return b.Bytes(), nil
}

// followTrips runs one trip watch (every trip) for the whole console,
// re-opening it after failures, until ctx is done.
func (c *Console) followTrips(ctx context.Context) {
	ctx = c.outgoing(ctx)
	for ctx.Err() == nil {
		err := c.deps.Trips.Watch(ctx, &tripv1.WatchTripsRequest{}, func(ev *commonv1.TripEvent) error {
			c.kpis.observe(ev, c.now())
			if c.hub.count() == 0 {
				return nil
			}
			frame, err := sseFrame("trip", eventOf(ev))
			if err != nil {
				return err
			}
			c.hub.broadcast(frame)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("console trip watch ended; re-opening", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(c.cfg.WatchRetry):
		}
	}
}

// pushSnapshots sends every live client a snapshot each SnapshotInterval
// (only while someone is watching).
func (c *Console) pushSnapshots(ctx context.Context) {
	t := time.NewTicker(c.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.hub.count() == 0 {
			continue
		}
		s, err := c.gather(ctx, c.background(), wantAll)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("console snapshot failed", "err", err)
			}
			continue
		}
		frame, err := sseFrame("snapshot", s)
		if err != nil {
			c.log.Error("console snapshot encode failed", "err", err)
			continue
		}
		c.hub.broadcast(frame)
	}
}

// live is GET /api/live: a server-sent event stream of "snapshot" events
// (the first at once, then every SnapshotInterval) and "trip" events (each
// trip event as it happens).
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	p, r, err := c.identify(r)
	if err != nil {
		writeError(w, err)
		return
	}
	sub, ok := c.hub.subscribe()
	if !ok {
		writeError(w, errUnavailable("console is shutting down"))
		return
	}
	defer c.hub.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(frame []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.CallTimeout))
		if _, err := w.Write(frame); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	if s, err := c.gather(r.Context(), p, wantAll); err == nil {
		if frame, err := sseFrame("snapshot", s); err == nil && !write(frame) {
			return
		}
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case frame, ok := <-sub.ch:
			if !ok || !write(frame) {
				return
			}
		case <-ping.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		}
	}
}
