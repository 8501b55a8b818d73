//go:build race

package dispatch_test

// raceEnabled: the race detector is on (it slows the road evaluation ten
// times and has nothing to find in it: one goroutine).
const raceEnabled = true
