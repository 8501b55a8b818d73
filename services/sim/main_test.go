package sim_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a run
// must stop every app it started (streams, rides, timers' goroutines).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
