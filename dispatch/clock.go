package dispatch

import "time"

// Clock tells the time. Production code passes [SystemClock]; tests pass a
// fake they advance by hand.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

var _ Clock = SystemClock{}
