package sim

import (
	"runtime"
	"syscall"
	"time"
)

// saturationShare is the share of the cores the simulator may use before
// its figures describe the simulator rather than the platform.
const saturationShare = 0.8

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuReport fills the simulator's own CPU figures: cores it used on average
// since start, and whether that is near what the machine has for it (then
// latencies and rates measure the simulator, not the platform). In
// `hexride dev --sim` the platform shares the process, so the figure is
// theirs together.
func cpuReport(s *Stats, used time.Duration, elapsed time.Duration) {
	s.SimCPUS = used.Seconds()
	if elapsed <= 0 {
		return
	}
	s.SimCores = used.Seconds() / elapsed.Seconds()
	s.SimSaturated = s.SimCores >= saturationShare*float64(runtime.GOMAXPROCS(0))
}
