// Package fakeclock is a [dispatch.TimerClock] for tests: time stands still
// until the test advances it, and the calls that fall due then run in the
// test's goroutine, in order of their due time (ties in order of
// scheduling), so a run is repeatable.
package fakeclock

import (
	"sync"
	"time"

	"github.com/hexride/hexride/dispatch"
)

// Clock is a fake clock. The zero value is not usable: call New.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers map[*timer]struct{}
}

var _ dispatch.TimerClock = (*Clock)(nil)

// New returns a clock stopped at start.
func New(start time.Time) *Clock {
	return &Clock{now: start, timers: map[*timer]struct{}{}}
}

type timer struct {
	c   *Clock
	at  time.Time
	seq uint64
	f   func()
}

// Stop cancels the call; false if it already ran or was stopped.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if _, ok := t.c.timers[t]; !ok {
		return false
	}
	delete(t.c.timers, t)
	return true
}

// Now is the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d (d ≤ 0: at the next Advance, even by 0).
func (c *Clock) AfterFunc(d time.Duration, f func()) dispatch.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{c: c, at: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers[t] = struct{}{}
	return t
}

// Pending is the number of calls scheduled and not yet run.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Next is when the earliest pending call is due (false: none).
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.earliest()
	if t == nil {
		return time.Time{}, false
	}
	return t.at, true
}

// earliest is the next call due, by time then scheduling order. c.mu held.
func (c *Clock) earliest() *timer {
	var best *timer
	for t := range c.timers {
		if best == nil || t.at.Before(best.at) || (t.at.Equal(best.at) && t.seq < best.seq) {
			best = t
		}
	}
	return best
}

// Advance moves time forward by d, running each call that falls due at its
// due time (calls scheduled by those calls run too if they fall due within
// d). It returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	end := c.now.Add(max(d, 0))
	c.mu.Unlock()
	return c.AdvanceTo(end)
}

// AdvanceTo moves time forward to end (never backward), as Advance.
func (c *Clock) AdvanceTo(end time.Time) time.Time {
	for {
		c.mu.Lock()
		t := c.earliest()
		if t == nil || t.at.After(end) {
			if end.After(c.now) {
				c.now = end
			}
			now := c.now
			c.mu.Unlock()
			return now
		}
		delete(c.timers, t)
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
	}
}
