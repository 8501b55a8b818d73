package driver

import (
	"errors"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// maxFlagged bounds the flagged-driver table; the least recently refused
// entries go first.
const maxFlagged = 10000

// flag is what the gateway remembers about a driver whose samples it
// refused as implausible.
type flag struct {
	refused  int32
	reason   string
	at       time.Time
	position *commonv1.LatLng
}

// flags remembers drivers with refused samples, across reconnects.
type flags struct {
	mu sync.Mutex
	m  map[string]*flag
}

// integrityRefusal reports whether a sample refusal says something about
// the driver (as opposed to it sending too often).
func integrityRefusal(err error) bool {
	return errors.Is(err, errImplausible) || errors.Is(err, errStale) || errors.Is(err, errInaccurate)
}

func (f *flags) record(driverID string, err error, at time.Time, last *commonv1.LatLng) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*flag{}
	}
	e, ok := f.m[driverID]
	if !ok {
		if len(f.m) >= maxFlagged {
			f.evictOldestLocked()
		}
		e = &flag{}
		f.m[driverID] = e
	}
	e.refused++
	e.reason, e.at, e.position = err.Error(), at, last
}

func (f *flags) evictOldestLocked() {
	var oldest string
	var at time.Time
	for id, e := range f.m {
		if oldest == "" || e.at.Before(at) {
			oldest, at = id, e.at
		}
	}
	delete(f.m, oldest)
}

// list returns up to limit flagged drivers, most recently refused first.
func (f *flags) list(limit int) []*driverv1.FlaggedDriver {
	f.mu.Lock()
	out := make([]*driverv1.FlaggedDriver, 0, len(f.m))
	for id, e := range f.m {
		out = append(out, &driverv1.FlaggedDriver{
			DriverId: id, RefusedSamples: e.refused, LastReason: e.reason,
			LastRefusedAt: timestamppb.New(e.at), LastPosition: e.position,
		})
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b *driverv1.FlaggedDriver) int {
		if c := b.GetLastRefusedAt().AsTime().Compare(a.GetLastRefusedAt().AsTime()); c != 0 {
			return c
		}
		if a.GetDriverId() < b.GetDriverId() {
			return -1
		}
		return 1
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
