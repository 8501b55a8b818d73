package sim

import (
	"runtime"
	"testing"
	"time"
)

func TestCPUReport(t *testing.T) {
	cores := float64(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		name      string
		used      time.Duration
		elapsed   time.Duration
		wantCores float64
		saturated bool
	}{
		{"idle", 0, 10 * time.Second, 0, false},
		{"half a core", 5 * time.Second, 10 * time.Second, 0.5, 0.5 >= saturationShare*cores},
		{"every core", time.Duration(cores * float64(10*time.Second)), 10 * time.Second, cores, true},
		{"no time yet", time.Second, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Stats
			cpuReport(&s, tc.used, tc.elapsed)
			if s.SimCores != tc.wantCores || s.SimSaturated != tc.saturated || s.SimCPUS != tc.used.Seconds() {
				t.Fatalf("got %.2f cores saturated %v (%.1f s), want %.2f %v", s.SimCores, s.SimSaturated, s.SimCPUS, tc.wantCores, tc.saturated)
			}
		})
	}
	if processCPU() <= 0 {
		t.Fatal("processCPU reads nothing")
	}
}
