package roads

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/paulmach/osm"
	"github.com/paulmach/osm/osmpbf"
)

// pbfSummary is what both readers must agree on.
type pbfSummary struct {
	nodes, ways, refs, tags int
	idSum, latSum, lngSum   int64
	refSum                  int64
	highways                map[string]int
}

// TestPBFReaderMatchesOsmpbf reads the Delaware extract with our reader
// and with github.com/paulmach/osm/osmpbf and compares every node's
// position and every way's refs and tags (as sums and counts).
func TestPBFReaderMatchesOsmpbf(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the whole Delaware extract twice")
	}
	path := delawarePBF(t)
	ours := pbfSummary{highways: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = readPBF(f, pbfHandler{
		node: func(id int64, lat, lng int32) {
			ours.nodes++
			ours.idSum += id
			ours.latSum += int64(lat)
			ours.lngSum += int64(lng)
		},
		way: func(id int64, keys, vals []string, refs []int64) {
			ours.ways++
			ours.idSum += id
			ours.tags += len(keys)
			for i, k := range keys {
				if k == "highway" {
					ours.highways[vals[i]]++
				}
			}
			for _, r := range refs {
				ours.refs++
				ours.refSum += r
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	theirs := pbfSummary{highways: map[string]int{}}
	f2, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	sc := osmpbf.New(context.Background(), f2, 1)
	defer sc.Close()
	sc.SkipRelations = true
	for sc.Scan() {
		switch o := sc.Object().(type) {
		case *osm.Node:
			theirs.nodes++
			theirs.idSum += int64(o.ID)
			theirs.latSum += int64(math.Round(o.Lat * 1e7))
			theirs.lngSum += int64(math.Round(o.Lon * 1e7))
		case *osm.Way:
			theirs.ways++
			theirs.idSum += int64(o.ID)
			theirs.tags += len(o.Tags)
			if hw := o.Tags.Find("highway"); hw != "" {
				theirs.highways[hw]++
			}
			for _, n := range o.Nodes {
				theirs.refs++
				theirs.refSum += int64(n.ID)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes, %d ways, %d refs, %d way tags", ours.nodes, ours.ways, ours.refs, ours.tags)
	hw := func(s pbfSummary) map[string]int { return s.highways }
	if ours.nodes != theirs.nodes || ours.ways != theirs.ways || ours.refs != theirs.refs || ours.tags != theirs.tags ||
		ours.idSum != theirs.idSum || ours.latSum != theirs.latSum || ours.lngSum != theirs.lngSum || ours.refSum != theirs.refSum {
		t.Errorf("readers disagree:\nours   %+v\ntheirs %+v", ours, theirs)
	}
	for k, v := range hw(theirs) {
		if hw(ours)[k] != v {
			t.Errorf("highway=%s: %d ways, osmpbf %d", k, hw(ours)[k], v)
		}
	}
}
