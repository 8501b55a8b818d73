package dispatch

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

type modelDriver struct {
	pos     geo.LatLng
	status  Status
	product string
	seen    time.Time
}

// FuzzIndexOps drives the index from a fuzzed tape of operations with a
// fake clock and checks it against a map model after every step, plus the
// nearest-driver oracle and the internal invariants at the end.
func FuzzIndexOps(f *testing.F) {
	f.Add([]byte{0, 1, 10, 20, 0, 2, 11, 21, 3, 1, 0, 0, 5, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 255, 255, 1, 0, 0, 0, 0, 0, 128, 128, 4, 9, 0, 0})
	f.Add([]byte{0, 3, 1, 1, 2, 3, 2, 0, 0, 3, 200, 7, 6, 0, 0, 0, 0, 4, 90, 90})
	f.Add([]byte("the quick brown fox jumps over the lazy dog, repeatedly and at random"))
	f.Fuzz(func(t *testing.T, tape []byte) {
		clk := newFakeClock()
		cfg := DefaultIndexConfig()
		cfg.Shards = 2
		cfg.TTL = 20 * time.Second
		ix := mustIndex(t, cfg, clk)
		model := map[string]modelDriver{}
		// Positions on a small grid around a hot spot chosen by the tape:
		// many drivers share cells, some share exact positions.
		spots := []geo.LatLng{{Lat: 37.7749, Lng: -122.4194}, {Lat: -16.8, Lng: 179.9995}, {Lat: 89.9995, Lng: 0}}
		base := spots[0]
		if len(tape) > 0 {
			base = spots[int(tape[0])%len(spots)]
		}
		products := []string{"x", "xl"}
		for i := 0; i+4 <= len(tape) && i < 400; i += 4 {
			op, who, a, b := tape[i]%8, tape[i+1]%12, tape[i+2], tape[i+3]
			id := fmt.Sprintf("d%02d", who)
			switch op {
			case 0, 1, 2: // upsert
				pos := geo.Destination(base, float64(a)*360/256, float64(b)*4)
				st := Status(a % 3)
				prod := products[b%2]
				err := ix.Upsert(Location{DriverID: id, Pos: pos, Status: st, Product: prod, Heading: float64(a), Speed: float64(b) / 10})
				if err != nil {
					t.Fatalf("op %d upsert: %v", i/4, err)
				}
				model[id] = modelDriver{pos: pos.ToE7().LatLng(), status: st, product: prod, seen: time.Unix(clk.Now().Unix(), 0)}
			case 3: // remove
				_, had := model[id]
				if got := ix.Remove(id); got != had {
					t.Fatalf("op %d remove %s = %v, model %v", i/4, id, got, had)
				}
				delete(model, id)
			case 4: // status
				st := Status(a % 3)
				err := ix.SetStatus(id, st)
				m, had := model[id]
				if had != (err == nil) || (!had && !errors.Is(err, ErrUnknownDriver)) {
					t.Fatalf("op %d SetStatus %s: %v (model has %v)", i/4, id, err, had)
				}
				if had {
					m.status = st
					model[id] = m
				}
			case 5: // time passes
				clk.Advance(time.Duration(a%16) * time.Second)
			case 6: // expire
				n := ix.Expire(clk.Now())
				want := 0
				for k, m := range model {
					if m.seen.Before(clk.Now().Add(-cfg.TTL)) {
						delete(model, k)
						want++
					}
				}
				if n != want {
					t.Fatalf("op %d expire removed %d, model %d", i/4, n, want)
				}
			case 7: // query
				q := Query{Pos: geo.Destination(base, float64(a)*360/256, float64(b)*4), K: 1 + int(a%5), MaxRadius: 50 + float64(b)*8}
				got, err := ix.Nearest(q)
				if err != nil {
					t.Fatal(err)
				}
				want := bruteNearest(ix.Snapshot(), q, clk.Now())
				if brief := fmt.Sprint(brief(got)); brief != fmt.Sprint(briefOf(want)) {
					t.Fatalf("op %d nearest %+v: got %v want %v", i/4, q, brief, briefOf(want))
				}
			}
			if ix.Len() != len(model) {
				t.Fatalf("op %d: len %d model %d", i/4, ix.Len(), len(model))
			}
			if m, ok := model[id]; ok {
				d, found := ix.Get(id)
				if !found || d.Pos != m.pos || d.Status != m.status || d.Product != m.product || !d.Seen.Equal(m.seen) {
					t.Fatalf("op %d: Get(%s) = %+v, model %+v", i/4, id, d, m)
				}
			} else if _, found := ix.Get(id); found {
				t.Fatalf("op %d: %s indexed but not in model", i/4, id)
			}
		}
		checkConsistent(t, ix)
	})
}

func briefOf(cs []Candidate) []string { return brief(cs) }
