package dispatch

import (
	"errors"
	"fmt"
	"time"

	"github.com/hexride/hexride/geo"
)

// Topology is the shape of the supply grid that every process of a
// deployment must agree on: partitions (the unit of ownership among
// matching workers), index cells (where a driver is bucketed), surge cells
// (where demand and supply are priced), and how long a ride request looks
// for a driver. A process builds it once from its flags, validates it, and
// hands the same value to every service it runs.
type Topology struct {
	// PartitionResolution is the H3 resolution of partitions (--partition-res).
	PartitionResolution int
	// IndexResolution is the H3 resolution drivers are indexed at (--index-res).
	IndexResolution int
	// SurgeResolution is the H3 resolution of surge cells (--surge-res):
	// between the partition and index resolutions.
	SurgeResolution int
	// DispatchDeadline is how long a request looks for a driver
	// (--dispatch-deadline).
	DispatchDeadline time.Duration
}

// DefaultTopology: res-6 partitions (~36 km²), res-9 index cells
// (~0.1 km²), res-8 surge cells (~0.7 km²), 90 s to find a driver.
func DefaultTopology() Topology {
	return Topology{PartitionResolution: 6, IndexResolution: 9, SurgeResolution: 8, DispatchDeadline: 90 * time.Second}
}

// ErrInvalidTopology is what every Topology.Validate error wraps.
var ErrInvalidTopology = errors.New("invalid topology")

// Validate reports the first problem, naming the flag and its value.
func (t Topology) Validate() error {
	switch {
	case t.IndexResolution < 1 || t.IndexResolution > geo.MaxResolution:
		return fmt.Errorf("%w: --index-res=%d: want 1..%d", ErrInvalidTopology, t.IndexResolution, geo.MaxResolution)
	case t.PartitionResolution < 0 || t.PartitionResolution >= t.IndexResolution:
		return fmt.Errorf("%w: --partition-res=%d: want 0..%d (coarser than --index-res=%d)", ErrInvalidTopology, t.PartitionResolution, t.IndexResolution-1, t.IndexResolution)
	case t.SurgeResolution < t.PartitionResolution || t.SurgeResolution > t.IndexResolution:
		return fmt.Errorf("%w: --surge-res=%d: want %d..%d (between --partition-res and --index-res)", ErrInvalidTopology, t.SurgeResolution, t.PartitionResolution, t.IndexResolution)
	case t.DispatchDeadline <= 0:
		return fmt.Errorf("%w: --dispatch-deadline=%s: must be positive", ErrInvalidTopology, t.DispatchDeadline)
	}
	return nil
}
