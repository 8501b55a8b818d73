package dispatch

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTopologyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Topology)
		flag string // "" when valid
	}{
		{"default", func(*Topology) {}, ""},
		{"partition as fine as index", func(t *Topology) { t.PartitionResolution = 9 }, "--partition-res=9"},
		{"negative partition", func(t *Topology) { t.PartitionResolution = -1 }, "--partition-res=-1"},
		{"index too fine", func(t *Topology) { t.IndexResolution = 16 }, "--index-res=16"},
		{"surge finer than index", func(t *Topology) { t.SurgeResolution = 10 }, "--surge-res=10"},
		{"surge coarser than partition", func(t *Topology) { t.SurgeResolution = 5 }, "--surge-res=5"},
		{"surge at partition", func(t *Topology) { t.SurgeResolution = 6 }, ""},
		{"no deadline", func(t *Topology) { t.DispatchDeadline = 0 }, "--dispatch-deadline=0s"},
		{"short deadline", func(t *Topology) { t.DispatchDeadline = time.Second }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := DefaultTopology()
			tc.edit(&top)
			err := top.Validate()
			if tc.flag == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidTopology) || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate() = %v, want ErrInvalidTopology naming %s", err, tc.flag)
			}
		})
	}
}
