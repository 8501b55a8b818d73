package matching

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// indexWriters are the methods of dispatch.Index that change a driver's
// position or status, or drop it; indexReaders the rest of its exported
// methods. Only supply.go may call a writer.
var (
	indexWriters = []string{"Upsert", "Remove", "SetStatus", "Expire", "RemoveCells"}
	indexReaders = []string{"Resolution", "Get", "Len", "Snapshot", "DriversInPartition", "EachCellSupply", "CellSupply", "DriversByID", "Nearest", "NearestAppend"}
)

// TestSupplyOwnsTheIndex holds the package to one writer of the supply
// index: no non-test file but supply.go names the index type, builds one or
// calls a writing method (by name, whatever the receiver, so a new path to
// the index cannot slip past). It first checks every exported method of
// dispatch.Index is classified, so a new writer cannot go unnoticed.
func TestSupplyOwnsTheIndex(t *testing.T) {
	fset := token.NewFileSet()
	dispatchFiles, err := filepath.Glob(filepath.Join("..", "..", "dispatch", "*.go"))
	if err != nil || len(dispatchFiles) == 0 {
		t.Fatalf("dispatch sources: %v (%d files)", err, len(dispatchFiles))
	}
	for _, path := range dispatchFiles {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !fn.Name.IsExported() {
				continue
			}
			star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
			if !ok {
				continue
			}
			if id, ok := star.X.(*ast.Ident); !ok || id.Name != "Index" {
				continue
			}
			if !slices.Contains(indexWriters, fn.Name.Name) && !slices.Contains(indexReaders, fn.Name.Name) {
				t.Errorf("dispatch.Index.%s is new: add it to indexWriters if it changes the index, else to indexReaders", fn.Name.Name)
			}
		}
	}

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") || path == "supply.go" {
			continue
		}
		checked++
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && slices.Contains(indexWriters, sel.Sel.Name) {
					t.Errorf("%s: calls %s: only supply writes the index", fset.Position(n.Pos()), sel.Sel.Name)
				}
			case *ast.SelectorExpr:
				if pkg, ok := n.X.(*ast.Ident); ok && pkg.Name == "dispatch" && (n.Sel.Name == "Index" || n.Sel.Name == "NewIndex") {
					t.Errorf("%s: names dispatch.%s: only supply holds the index", fset.Position(n.Pos()), n.Sel.Name)
				}
				// Reaching supply's index at all (a method value such as
				// x.index.Upsert is not a call) goes around supply.
				if n.Sel.Name == "index" {
					t.Errorf("%s: reaches supply's index: go through supply's methods", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}

// TestSupplyWrites checks what each of supply's writes does to the index.
func TestSupplyWrites(t *testing.T) {
	here := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	near := geo.LatLng{Lat: 37.7760, Lng: -122.4180}
	away := geo.LatLng{Lat: 34.0522, Lng: -118.2437} // another partition
	cfg := DefaultConfig(m0, dispatch.DefaultTopology()).withTopology()
	res := cfg.Topology.PartitionResolution
	partition := func(p geo.LatLng) matchingapi.Partition {
		t.Helper()
		part, err := matchingapi.PartitionOf(p, res)
		if err != nil {
			t.Fatal(err)
		}
		return part
	}
	if partition(here) != partition(near) || partition(here) == partition(away) {
		t.Fatalf("test positions: want here and near in one partition, away in another")
	}
	loc := func(id string, p geo.LatLng, st matchingv1.DriverStatus, at time.Time) *matchingv1.DriverLocation {
		return &matchingv1.DriverLocation{DriverId: id, Position: toProtoLatLng(p), Status: st, GatewayAddress: "10.0.0.1:7000", RecordedAt: timestamppb.New(at)}
	}
	depart := func(id string, p geo.LatLng) *matchingv1.DriverDeparture {
		return &matchingv1.DriverDeparture{DriverId: id, Partition: partition(p).String()}
	}
	const (
		available = matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE
		busy      = matchingv1.DriverStatus_DRIVER_STATUS_BUSY
		offline   = matchingv1.DriverStatus_DRIVER_STATUS_OFFLINE
	)
	now := tickEpoch
	fresh := now.Add(-time.Second)
	stale := now.Add(-cfg.Index.TTL - 2*time.Second)

	type want struct {
		status  dispatch.Status
		pos     geo.LatLng
		offered bool
	}
	tests := []struct {
		name string
		// do writes to s; what it checks of the results it checks itself.
		do   func(t *testing.T, s *supply)
		want map[string]want // every indexed driver; absent: not indexed
	}{{
		name: "apply indexes locations with their status",
		do: func(t *testing.T, s *supply) {
			if n := s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh), loc("b", near, busy, fresh)}, nil); n != 2 {
				t.Errorf("accepted %d, want 2", n)
			}
		},
		want: map[string]want{"a": {status: dispatch.StatusAvailable, pos: here}, "b": {status: dispatch.StatusBusy, pos: near}},
	}, {
		name: "apply moves a driver to its latest position",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh)}, nil)
			s.apply([]*matchingv1.DriverLocation{loc("a", near, available, now)}, nil)
		},
		want: map[string]want{"a": {status: dispatch.StatusAvailable, pos: near}},
	}, {
		name: "apply removes a driver going offline",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh), loc("b", near, available, fresh)}, nil)
			if n := s.apply([]*matchingv1.DriverLocation{loc("a", here, offline, now)}, nil); n != 0 {
				t.Errorf("accepted %d for an offline driver, want 0", n)
			}
		},
		want: map[string]want{"b": {status: dispatch.StatusAvailable, pos: near}},
	}, {
		name: "apply rejects an invalid location",
		do: func(t *testing.T, s *supply) {
			if n := s.apply([]*matchingv1.DriverLocation{loc("", here, available, fresh)}, nil); n != 0 {
				t.Errorf("accepted %d, want 0", n)
			}
		},
		want: map[string]want{},
	}, {
		name: "a departure removes a driver still in the partition left",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh), loc("b", near, available, fresh)}, []*matchingv1.DriverDeparture{depart("a", here)})
		},
		want: map[string]want{"b": {status: dispatch.StatusAvailable, pos: near}},
	}, {
		name: "a departure keeps a driver already in another partition",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", away, available, fresh)}, []*matchingv1.DriverDeparture{depart("a", here), {DriverId: "a", Partition: "not a cell"}})
		},
		want: map[string]want{"a": {status: dispatch.StatusAvailable, pos: away}},
	}, {
		name: "reserve makes a driver busy and keeps it so through updates",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh)}, nil)
			if err := s.reserve("a", "trip-1"); err != nil {
				t.Fatal(err)
			}
			s.apply([]*matchingv1.DriverLocation{loc("a", near, available, now)}, nil)
		},
		want: map[string]want{"a": {status: dispatch.StatusBusy, pos: near, offered: true}},
	}, {
		name: "reserve refuses a driver another trip holds, not the same trip",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh)}, nil)
			if err := s.reserve("a", "trip-1"); err != nil {
				t.Fatal(err)
			}
			if err := s.reserve("a", "trip-2"); !errors.Is(err, errDriverBusy) {
				t.Errorf("second trip's reserve: %v, want errDriverBusy", err)
			}
			if err := s.reserve("a", "trip-1"); err != nil {
				t.Errorf("same trip's reserve: %v", err)
			}
		},
		want: map[string]want{"a": {status: dispatch.StatusBusy, pos: here, offered: true}},
	}, {
		name: "release available puts the driver back at once",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			s.release("a", true)
			if err := s.reserve("a", "trip-2"); err != nil {
				t.Errorf("reserve after release: %v", err)
			}
			s.release("a", true)
		},
		want: map[string]want{"a": {status: dispatch.StatusAvailable, pos: here}},
	}, {
		name: "release not available leaves the driver busy until its next update",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh), loc("b", near, available, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			_ = s.reserve("b", "trip-2")
			s.release("a", false)
			s.release("b", false)
			s.apply([]*matchingv1.DriverLocation{loc("b", near, available, now)}, nil)
		},
		want: map[string]want{"a": {status: dispatch.StatusBusy, pos: here}, "b": {status: dispatch.StatusAvailable, pos: near}},
	}, {
		name: "reserve and release of an unknown driver touch nothing",
		do: func(t *testing.T, s *supply) {
			if err := s.reserve("ghost", "trip-1"); err != nil {
				t.Fatal(err)
			}
			s.release("ghost", true)
		},
		want: map[string]want{},
	}, {
		name: "assigned makes a released driver busy",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			s.release("a", false)
			s.assigned("a")
		},
		want: map[string]want{"a": {status: dispatch.StatusBusy, pos: here}},
	}, {
		name: "expire drops only drivers silent past the TTL",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, stale), loc("b", near, busy, stale), loc("c", away, available, fresh)}, nil)
			if n := s.expire(now); n != 2 {
				t.Errorf("expired %d, want 2", n)
			}
		},
		want: map[string]want{"c": {status: dispatch.StatusAvailable, pos: away}},
	}, {
		name: "dropForeign drops the partitions no longer owned",
		do: func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", here, available, fresh), loc("b", near, busy, fresh), loc("c", away, available, fresh)}, nil)
			ownsAway := func(p matchingapi.Partition) bool { return p == partition(away) }
			if drivers, partitions := s.dropForeign(ownsAway); drivers != 2 || partitions != 1 {
				t.Errorf("dropped %d drivers in %d partitions, want 2 in 1", drivers, partitions)
			}
			if drivers, partitions := s.dropForeign(ownsAway); drivers != 0 || partitions != 0 {
				t.Errorf("dropped %d drivers in %d partitions again, want none", drivers, partitions)
			}
		},
		want: map[string]want{"c": {status: dispatch.StatusAvailable, pos: away}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSupply(cfg.Index, cfg.Topology.PartitionResolution, &testClock{now: now}, false)
			if err != nil {
				t.Fatal(err)
			}
			tt.do(t, s)
			got := map[string]want{}
			for _, d := range s.index.Snapshot() {
				got[d.ID] = want{status: d.Status, pos: d.Pos, offered: s.offering[d.ID] != ""}
			}
			for id, w := range tt.want {
				g, ok := got[id]
				switch {
				case !ok:
					t.Errorf("%s not indexed, want %v", id, w)
				case g.status != w.status || g.offered != w.offered || geo.Distance(g.pos, w.pos) > 0.05:
					t.Errorf("%s = %+v, want %+v", id, g, w)
				}
			}
			for id := range got {
				if _, ok := tt.want[id]; !ok {
					t.Errorf("%s indexed, want it gone", id)
				}
			}
			// The per-cell counters agree with the drivers.
			var counted, listed dispatch.SupplyCount
			s.eachCellSupply(func(_ geo.Cell, n dispatch.SupplyCount) {
				counted.Available += n.Available
				counted.Busy += n.Busy
				counted.Offline += n.Offline
			})
			for _, g := range got {
				switch g.status {
				case dispatch.StatusAvailable:
					listed.Available++
				case dispatch.StatusBusy:
					listed.Busy++
				}
			}
			if counted != listed {
				t.Errorf("cell counters %+v, drivers %+v", counted, listed)
			}
		})
	}
}

// TestSupplyFinishing checks chained supply's view: a finishing driver is
// busy to every search, found by finishingNear at its ride's dropoff while
// no offer is out to it, and gone from it once it has a next trip, a
// pickup, goes offline or falls silent.
func TestSupplyFinishing(t *testing.T) {
	here := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	dropoff := geo.LatLng{Lat: 37.7760, Lng: -122.4180}
	cfg := DefaultConfig(m0, dispatch.DefaultTopology()).withTopology()
	now := tickEpoch
	loc := func(id string, st matchingv1.DriverStatus, at time.Time) *matchingv1.DriverLocation {
		l := &matchingv1.DriverLocation{DriverId: id, Position: toProtoLatLng(here), Status: st, GatewayAddress: "10.0.0.1:7000", RecordedAt: timestamppb.New(at)}
		if st == matchingv1.DriverStatus_DRIVER_STATUS_FINISHING {
			l.Dropoff, l.RideTripId = toProtoLatLng(dropoff), "ride-"+id
		}
		return l
	}
	const (
		available = matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE
		busy      = matchingv1.DriverStatus_DRIVER_STATUS_BUSY
		finishing = matchingv1.DriverStatus_DRIVER_STATUS_FINISHING
		offline   = matchingv1.DriverStatus_DRIVER_STATUS_OFFLINE
	)
	fresh := now.Add(-time.Second)
	stale := now.Add(-cfg.Index.TTL - 2*time.Second)
	tests := []struct {
		name    string
		chained bool
		do      func(t *testing.T, s *supply)
		want    []string // finishingNear the dropoff
	}{
		{"a finishing driver is found at its dropoff", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh), loc("b", available, fresh), loc("c", busy, fresh)}, nil)
		}, []string{"a"}},
		{"chained supply off", false, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
		}, nil},
		{"an offer out hides it", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			if err := s.reserve("a", "trip-1"); err != nil {
				t.Fatal(err)
			}
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, now)}, nil)
		}, nil},
		{"a released offer shows it again, still busy to other searches", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			s.release("a", true)
		}, []string{"a"}},
		{"assigned: it has its next trip", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			s.release("a", false)
			s.assigned("a")
		}, nil},
		{"assigned, a finishing location sent before does not bring it back", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			_ = s.reserve("a", "trip-1")
			s.release("a", false)
			s.assigned("a")
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, now)}, nil)
		}, nil},
		{"its next ride finishing after a pickup: back", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			s.assigned("a")
			s.apply([]*matchingv1.DriverLocation{loc("a", busy, now)}, nil)
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, now)}, nil)
		}, []string{"a"}},
		{"a finishing location without its ride is busy, not chained", true, func(t *testing.T, s *supply) {
			l := loc("a", finishing, fresh)
			l.RideTripId = ""
			s.apply([]*matchingv1.DriverLocation{l, func() *matchingv1.DriverLocation { l := loc("b", finishing, fresh); l.Dropoff = nil; return l }()}, nil)
		}, nil},
		{"a pickup ends it", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			s.apply([]*matchingv1.DriverLocation{loc("a", busy, now)}, nil)
		}, nil},
		{"offline ends it", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, fresh)}, nil)
			s.apply([]*matchingv1.DriverLocation{loc("a", offline, now)}, nil)
		}, nil},
		{"silence ends it", true, func(t *testing.T, s *supply) {
			s.apply([]*matchingv1.DriverLocation{loc("a", finishing, stale)}, nil)
			s.expire(now)
			if len(s.rides) != 0 {
				t.Errorf("rides %v after expiry", s.rides)
			}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSupply(cfg.Index, cfg.Topology.PartitionResolution, &testClock{now: now}, tt.chained)
			if err != nil {
				t.Fatal(err)
			}
			tt.do(t, s)
			if d, ok := s.driver("a"); ok && d.Status != dispatch.StatusBusy {
				t.Errorf("a is %v, want busy to other searches", d.Status)
			}
			found, err := s.finishingNear(dispatch.Query{Pos: dropoff, K: 10, MaxRadius: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range found {
				got = append(got, f.ID)
				if f.Ride != "ride-"+f.ID || geo.Distance(f.Dropoff, dropoff) > 0.05 || geo.Distance(f.Pos, here) > 0.05 {
					t.Errorf("%s: ride %s to %v from %v, want ride-%s to %v from %v", f.ID, f.Ride, f.Dropoff, f.Pos, f.ID, dropoff, here)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("finishing near the dropoff: %v, want %v", got, tt.want)
			}
		})
	}
}
