package dispatch

import "time"

// Clock tells the time. Production code passes [SystemClock]; tests pass a
// fake they advance by hand.
type Clock interface {
	Now() time.Time
}

// Timer is a call a [TimerClock] will make; Stop cancels it and reports
// whether it did (false: it already ran or was stopped).
type Timer interface {
	Stop() bool
}

// TimerClock is a Clock that also schedules calls. Dispatch hosts take one
// instead of using the time package, so a test with a fake clock decides
// when every offer lapses and every batch window closes, and the whole
// dispatch timeline is a function of its inputs.
type TimerClock interface {
	Clock
	// AfterFunc calls f (in its own goroutine, or for a fake clock in the
	// goroutine that advances it) once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

var _ TimerClock = SystemClock{}
