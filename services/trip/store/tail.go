package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// EventSource is the part of Store a Tailer reads.
type EventSource interface {
	EventRefs(ctx context.Context, q EventQuery) ([]EventRef, error)
	EventsByID(ctx context.Context, ids []uuid.UUID) ([]Event, error)
	Now(ctx context.Context) (time.Time, error)
}

// Tailer follows the event log of a store shared by many instances.
//
// Events become visible in commit order, not in At order: a transaction that
// took its timestamp early but committed late shows up behind events already
// delivered. A reader that only moves a high-water mark forward would skip
// it, so every Poll re-reads a lookback window behind the newest At seen and
// drops events it already delivered, by ID. An event whose transaction
// committed more than Lookback after its At would be missed; keep Lookback
// well above the longest write transaction (they are milliseconds).
//
// A Tailer is not safe for concurrent use.
type Tailer struct {
	src      EventSource
	lookback time.Duration
	batch    int
	high     time.Time // newest At seen
	seen     map[uuid.UUID]time.Time
	started  bool
}

// DefaultLookback is the re-read window of a Tailer.
const DefaultLookback = 5 * time.Second

// NewTailer returns a Tailer that delivers events committed after its first
// Poll (events already committed then are treated as seen).
func NewTailer(src EventSource, lookback time.Duration) *Tailer {
	if lookback <= 0 {
		lookback = DefaultLookback
	}
	return &Tailer{src: src, lookback: lookback, batch: 1000, seen: map[uuid.UUID]time.Time{}}
}

// Poll returns the events that became visible since the last Poll, each
// once, in (At, ID) order within the batch. It reads the ids in the
// lookback window and fetches only the events it has not delivered. On an
// error nothing of this Poll counts as seen: the next Poll reads it again.
func (t *Tailer) Poll(ctx context.Context) (_ []Event, err error) {
	if !t.started {
		now, err := t.src.Now(ctx)
		if err != nil {
			return nil, err
		}
		t.high = now
	}
	high := t.high
	var added []uuid.UUID
	defer func() {
		if err != nil {
			for _, id := range added {
				delete(t.seen, id)
			}
			t.high = high
		}
	}()
	since := t.high.Add(-t.lookback)
	var fresh []uuid.UUID
	for {
		refs, err := t.src.EventRefs(ctx, EventQuery{Since: since, Limit: t.batch})
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if _, dup := t.seen[r.ID]; dup {
				continue
			}
			t.seen[r.ID] = r.At
			added = append(added, r.ID)
			if r.At.After(t.high) {
				t.high = r.At
			}
			if t.started {
				fresh = append(fresh, r.ID)
			}
		}
		if len(refs) < t.batch {
			break
		}
		// A full batch: continue from its last At. Events sharing that At
		// are read again and dropped as seen.
		last := refs[len(refs)-1].At
		if !last.After(since) {
			// More than a batch share one timestamp; widen the batch.
			t.batch *= 2
			continue
		}
		since = last
	}
	var out []Event
	if len(fresh) > 0 {
		if out, err = t.src.EventsByID(ctx, fresh); err != nil {
			return nil, err
		}
	}
	t.started = true
	// Forget events that fell out of the window.
	floor := t.high.Add(-t.lookback)
	for id, at := range t.seen {
		if at.Before(floor) {
			delete(t.seen, id)
		}
	}
	return out, nil
}
