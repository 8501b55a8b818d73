package roads

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// road is one segment of a hand-made graph.
type road struct {
	a, b int
	kmh  float64
	dir  direction
}

// handGraph contracts a hand-made graph (no SCC filter, so it can have
// unreachable parts) and returns it after a file round trip.
func handGraph(t *testing.T, nodes []LatLng, roads []road, opts ...Option) *Graph {
	t.Helper()
	b := &baseGraph{}
	for _, p := range nodes {
		b.lat = append(b.lat, int32(math.Round(p.Lat*1e7)))
		b.lng = append(b.lng, int32(math.Round(p.Lng*1e7)))
	}
	for _, r := range roads {
		w := makeWeight(distance(nodes[r.a], nodes[r.b]), r.kmh)
		s := segment{uint32(r.a), uint32(r.b), w, w}
		switch r.dir {
		case dirFwd:
			s.bwd = noArc
		case dirBwd:
			s.fwd = noArc
		}
		b.segs = append(b.segs, s)
	}
	g, _, err := contract(context.Background(), b, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := g.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	loaded, err := Read(buf.Bytes(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

// The test town, ~85 m between columns and ~111 m between rows:
//
//	0 ──▶ 1 ─── 2          0→1 is one-way
//	│     │     │
//	3 ─── 4 ─── 5
//
//	6 ─── 7                about 1 km south, not connected
var (
	town = []LatLng{
		{39.750, -75.550}, {39.750, -75.549}, {39.750, -75.548},
		{39.749, -75.550}, {39.749, -75.549}, {39.749, -75.548},
		{39.740, -75.550}, {39.740, -75.549},
	}
	townRoads = []road{
		{0, 1, 30, dirFwd}, {1, 2, 30, dirBoth},
		{0, 3, 30, dirBoth}, {1, 4, 30, dirBoth}, {2, 5, 30, dirBoth},
		{3, 4, 30, dirBoth}, {4, 5, 30, dirBoth},
		{6, 7, 30, dirBoth},
	}
)

func along(a, b LatLng, f float64) LatLng {
	return LatLng{a.Lat + f*(b.Lat-a.Lat), a.Lng + f*(b.Lng-a.Lng)}
}

func townWeight(a, b int) uint64 { return makeWeight(distance(town[a], town[b]), 30) }

func TestOneWay(t *testing.T) {
	g := handGraph(t, town, townRoads)
	p, q := along(town[0], town[1], 0.25), along(town[0], town[1], 0.75)
	sp, err := g.Snap(p)
	if err != nil {
		t.Fatal(err)
	}
	sq, err := g.Snap(q)
	if err != nil {
		t.Fatal(err)
	}
	w01 := townWeight(0, 1)
	around := townWeight(1, 4) + townWeight(4, 3) + townWeight(3, 0)
	tests := []struct {
		name     string
		from, to LatLng
		want     uint64
	}{
		{"with the one-way: straight along it", p, q, scaleWeight(w01, sq.frac-sp.frac)},
		{"against the one-way: around the block", q, p, scaleWeight(w01, 1-sq.frac) + around + scaleWeight(w01, sp.frac)},
		{"node 1 to node 0: around the block", town[1], town[0], around},
		{"node 0 to node 1: along the one-way", town[0], town[1], w01},
		{"same point", p, p, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, m, err := g.Route(tc.from, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if d != weightTime(tc.want) || m != weightMeters(tc.want) {
				t.Errorf("got %v %.2f m, want %v %.2f m", d, m, weightTime(tc.want), weightMeters(tc.want))
			}
			times, meters, err := g.DriveTimes(tc.from, []LatLng{tc.to})
			if err != nil {
				t.Fatal(err)
			}
			if times[0] != d || meters[0] != m {
				t.Errorf("DriveTimes: %v %.2f m, Route: %v %.2f m", times[0], meters[0], d, m)
			}
			times, meters, err = g.DriveTimesTo([]LatLng{tc.from}, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if times[0] != d || meters[0] != m {
				t.Errorf("DriveTimesTo: %v %.2f m, Route: %v %.2f m", times[0], meters[0], d, m)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	g := handGraph(t, town, townRoads)
	island := along(town[6], town[7], 0.5)
	far := LatLng{39.80, -75.55} // ~5 km from any road
	d, m, err := g.Route(town[0], island)
	if err != nil || d != Unreachable || !math.IsNaN(m) {
		t.Errorf("Route to the island: %v %v %v, want Unreachable NaN nil", d, m, err)
	}
	times, meters, err := g.DriveTimes(town[0], []LatLng{town[2], island, far})
	if err != nil {
		t.Fatal(err)
	}
	if times[0] <= 0 || times[1] != Unreachable || times[2] != Unreachable || !math.IsNaN(meters[1]) || !math.IsNaN(meters[2]) {
		t.Errorf("DriveTimes: %v %v, want [>0 Unreachable Unreachable]", times, meters)
	}
	times, _, err = g.DriveTimesTo([]LatLng{island, far, town[2]}, town[0])
	if err != nil {
		t.Fatal(err)
	}
	if times[0] != Unreachable || times[1] != Unreachable || times[2] <= 0 {
		t.Errorf("DriveTimesTo: %v, want [Unreachable Unreachable >0]", times)
	}
	if _, _, err := g.DriveTimes(far, []LatLng{town[0]}); !errors.Is(err, ErrTooFarFromRoad) {
		t.Errorf("origin off the network: %v, want ErrTooFarFromRoad", err)
	}
	if _, _, err := g.Route(town[0], far); !errors.Is(err, ErrTooFarFromRoad) || !strings.Contains(err.Error(), "destination") {
		t.Errorf("destination off the network: %v, want ErrTooFarFromRoad naming the destination", err)
	}
}

func TestSnap(t *testing.T) {
	g := handGraph(t, town, townRoads, WithMaxSnap(100))
	north := func(p LatLng, m float64) LatLng { return LatLng{p.Lat + m/(earthRadius*degToRad), p.Lng} }
	tests := []struct {
		name    string
		p       LatLng
		meters  float64 // expected snap distance
		onto    LatLng  // expected snapped point
		wantErr error
	}{
		{"on a node", town[4], 0, town[4], nil},
		{"mid-segment", along(town[3], town[4], 0.5), 0, along(town[3], town[4], 0.5), nil},
		{"50 m north of node 1", north(town[1], 50), 50, town[1], nil},
		{"99 m north of the middle of 0-1", north(along(town[0], town[1], 0.5), 99), 99, along(town[0], town[1], 0.5), nil},
		{"101 m north: beyond the limit", north(town[1], 101), 0, LatLng{}, ErrTooFarFromRoad},
		{"far away", LatLng{40.5, -75}, 0, LatLng{}, ErrTooFarFromRoad},
		{"NaN", LatLng{math.NaN(), 0}, 0, LatLng{}, ErrInvalidLatLng},
		{"latitude out of range", LatLng{91, 0}, 0, LatLng{}, ErrInvalidLatLng},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := g.Snap(tc.p)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(s.Meters-tc.meters) > 0.05 || distance(s.Point, tc.onto) > 0.05 {
				t.Errorf("snapped to %v at %.3f m, want %v at %.3f m", s.Point, s.Meters, tc.onto, tc.meters)
			}
		})
	}
	if _, _, err := g.DriveTimes(town[0], []LatLng{{math.NaN(), 0}}); !errors.Is(err, ErrInvalidLatLng) {
		t.Errorf("DriveTimes with an invalid target: %v, want ErrInvalidLatLng", err)
	}
	if _, err := Read(mustBytes(t, g), WithMaxSnap(0)); err == nil {
		t.Error("WithMaxSnap(0) accepted")
	}
}

func mustBytes(t *testing.T, g *Graph) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := g.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFileRoundTrip(t *testing.T) {
	g := handGraph(t, town, townRoads)
	g.meta = metadata{Source: "town", BBox: &BBox{39, -76, 40, -75}, Speeds: Speeds{"residential": 30}}
	data := mustBytes(t, g)
	path := filepath.Join(t.TempDir(), "town.roads")
	if err := g.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o644 {
		t.Errorf("written file has mode %v, want 0644", fi.Mode().Perm())
	}
	h, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name     string
		got, exp any
	}{
		{"lat", h.lat, g.lat}, {"lng", h.lng, g.lng}, {"segs", h.segs, g.segs},
		{"upFirst", h.upFirst, g.upFirst}, {"upHead", h.upHead, g.upHead}, {"upW", h.upW, g.upW},
		{"dnFirst", h.dnFirst, g.dnFirst}, {"dnHead", h.dnHead, g.dnHead}, {"dnW", h.dnW, g.dnW},
		{"meta", h.meta, g.meta},
	} {
		if !reflect.DeepEqual(f.got, f.exp) {
			t.Errorf("%s differs after a round trip", f.name)
		}
	}
	if again := mustBytes(t, h); !bytes.Equal(again, data) {
		t.Error("writing a loaded graph gives different bytes")
	}
}

// patch returns a copy of data with f applied and, if fix, the checksum
// recomputed (so only the checks behind the checksum see the damage).
func patch(data []byte, fix bool, f func([]byte) []byte) []byte {
	d := f(bytes.Clone(data))
	if fix && len(d) >= headerSize {
		crc := crc32.Update(crc32.Checksum(d[:60], castagnoli), castagnoli, d[headerSize:])
		binary.LittleEndian.PutUint32(d[60:], crc)
	}
	return d
}

func TestCorruptFile(t *testing.T) {
	g := handGraph(t, town, townRoads)
	data := mustBytes(t, g)
	metaLen := int(binary.LittleEndian.Uint32(data[32:]))
	n, m := len(g.lat), len(g.segs)
	upHeadAt := headerSize + metaLen + 8*n + 24*m + 4*(n+1)
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "not a hexride road graph"},
		{"a PBF file", []byte("\x00\x00\x00\x0d\x0a\x09OSMHeader" + strings.Repeat("x", 64)), "not a hexride road graph"},
		{"newer version", patch(data, false, func(d []byte) []byte { binary.LittleEndian.PutUint32(d[8:], 2); return d }), "format version 2"},
		{"truncated", data[:len(data)-1], "truncated"},
		{"header only", data[:headerSize], "truncated"},
		{"flipped body byte", patch(data, false, func(d []byte) []byte { d[len(d)/2] ^= 1; return d }), "checksum mismatch"},
		{"flipped count", patch(data, false, func(d []byte) []byte { d[16] ^= 1; return d }), "checksum mismatch"},
		{"counts disagree (checksum fixed)", patch(data, true, func(d []byte) []byte { d[16]++; return d }), "do not match"},
		{"downward arc (checksum fixed)", patch(data, true, func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[upHeadAt:], 0)
			return d
		}), "does not point upward"},
		{"bad metadata (checksum fixed)", patch(data, true, func(d []byte) []byte { d[headerSize] = '!'; return d }), "metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.data)
			if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %v, want ErrBadFile mentioning %q", err, tc.msg)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.roads")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestWayClass(t *testing.T) {
	tests := []struct {
		tags []string // key, value, …
		ok   bool
		kmh  float64
		dir  direction
	}{
		{[]string{"highway", "residential"}, true, 25, dirBoth},
		{[]string{"highway", "residential", "oneway", "yes"}, true, 25, dirFwd},
		{[]string{"highway", "residential", "oneway", "true"}, true, 25, dirFwd},
		{[]string{"highway", "residential", "oneway", "1"}, true, 25, dirFwd},
		{[]string{"highway", "residential", "oneway", "-1"}, true, 25, dirBwd},
		{[]string{"highway", "residential", "oneway", "reversible"}, false, 0, 0},
		{[]string{"highway", "primary", "junction", "roundabout"}, true, 50, dirFwd},
		{[]string{"highway", "primary", "junction", "roundabout", "oneway", "no"}, true, 50, dirBoth},
		{[]string{"highway", "motorway"}, true, 90, dirFwd},
		{[]string{"highway", "motorway", "oneway", "no"}, true, 90, dirBoth},
		{[]string{"highway", "motorway_link"}, true, 50, dirBoth},
		{[]string{"highway", "service", "access", "private"}, false, 0, 0},
		{[]string{"highway", "service", "access", "private", "motor_vehicle", "yes"}, true, 15, dirBoth},
		{[]string{"highway", "service", "motorcar", "no"}, false, 0, 0},
		{[]string{"highway", "pedestrian", "area", "yes"}, false, 0, 0},
		{[]string{"highway", "footway"}, false, 0, 0},
		{[]string{"highway", "cycleway", "oneway", "yes"}, false, 0, 0},
		{[]string{"building", "yes"}, false, 0, 0},
	}
	for _, tc := range tests {
		var keys, vals []string
		for i := 0; i < len(tc.tags); i += 2 {
			keys, vals = append(keys, tc.tags[i]), append(vals, tc.tags[i+1])
		}
		kmh, dir, ok := wayClass(keys, vals, DefaultSpeeds())
		if ok != tc.ok || kmh != tc.kmh || dir != tc.dir {
			t.Errorf("%v: got %v %v %v, want %v %v %v", tc.tags, kmh, dir, ok, tc.kmh, tc.dir, tc.ok)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	pbf, err := os.ReadFile(delawarePBF(t))
	if err != nil {
		t.Fatal(err)
	}
	ocean := BBox{MinLat: 38.0, MinLng: -74.5, MaxLat: 38.1, MaxLng: -74.4}
	tests := []struct {
		name  string
		input []byte
		opts  BuildOptions
		want  error
		msg   string
	}{
		{"empty input", nil, BuildOptions{}, ErrBadPBF, "empty"},
		{"not a PBF", []byte("<?xml version='1.0'?><osm></osm>"), BuildOptions{}, ErrBadPBF, "not a PBF"},
		{"truncated", pbf[:len(pbf)/3], BuildOptions{}, ErrBadPBF, "truncated"},
		{"corrupt block", patch(pbf, false, func(d []byte) []byte {
			for i := 2000; i < 2100; i++ {
				d[i] ^= 0x5a
			}
			return d
		}), BuildOptions{}, ErrBadPBF, ""},
		{"bbox in the ocean", pbf, BuildOptions{BBox: &ocean}, nil, "no drivable roads"},
		{"inverted bbox", pbf, BuildOptions{BBox: &BBox{40, -75, 39, -76}}, ErrBadBBox, ""},
		{"zero speed", pbf, BuildOptions{Speeds: Speeds{"residential": 0}}, ErrBadSpeed, "residential"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Build(context.Background(), bytes.NewReader(tc.input), tc.opts)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Build(ctx, bytes.NewReader(pbf), BuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
}

// TestConcurrentQueries runs queries from many goroutines on one graph
// (meant for -race) and checks they agree with sequential answers.
func TestConcurrentQueries(t *testing.T) {
	g := handGraph(t, town, townRoads)
	pts := []LatLng{town[0], town[2], along(town[3], town[4], 0.3), along(town[0], town[1], 0.6), town[5]}
	want, _, err := g.DriveTimes(pts[0], pts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, _, err := g.DriveTimes(pts[0], pts)
				if err != nil || !reflect.DeepEqual(got, want) {
					errs <- "DriveTimes differs under concurrency"
					return
				}
				d, _, err := g.Route(pts[0], pts[4])
				if err != nil || d != want[4] {
					errs <- "Route differs under concurrency"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestDriveTimesFacing: a car on the street 1–2 of the test town, half
// way along, with a pickup just past node 1. Heading west it drives
// straight there; heading east it cannot turn on the spot, so it drives on
// to node 2 and back. A heading no street near it runs along (north), or
// none, leaves it free to go either way, as DriveTimesTo does.
func TestDriveTimesFacing(t *testing.T) {
	g := handGraph(t, town, townRoads)
	car, pickup := along(town[1], town[2], 0.5), along(town[1], town[2], 0.1)
	sc, err := g.Snap(car)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := g.Snap(pickup)
	if err != nil {
		t.Fatal(err)
	}
	w12 := townWeight(1, 2)
	ahead := scaleWeight(w12, sc.frac-sp.frac)
	back := scaleWeight(w12, 1-sc.frac) + scaleWeight(w12, 1-sp.frac)
	for _, tc := range []struct {
		name    string
		heading float64
		want    uint64
	}{
		{"heading west, towards the pickup", 270, ahead},
		{"heading a little south of west", 250, ahead},
		{"heading east, away: on to node 2 and back", 90, back},
		{"heading north: no street that way within reach", 0, ahead},
		{"heading unknown", math.NaN(), ahead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			times, meters, err := g.DriveTimesFacing([]LatLng{car}, []float64{tc.heading}, pickup)
			if err != nil {
				t.Fatal(err)
			}
			if d := times[0] - weightTime(tc.want); d < -time.Millisecond || d > time.Millisecond || math.Abs(meters[0]-weightMeters(tc.want)) > 0.05 {
				t.Errorf("got %v %.2f m, want %v %.2f m", times[0], meters[0], weightTime(tc.want), weightMeters(tc.want))
			}
			// The car's path: the same drive, ending at the pickup.
			path, err := g.PathFacing(car, tc.heading, pickup)
			if err != nil {
				t.Fatal(err)
			}
			if d := path.Time() - weightTime(tc.want); d < -2*time.Millisecond || d > 2*time.Millisecond || distance(path.Points[len(path.Points)-1], sp.Point) > 0.01 {
				t.Errorf("path %v to %v, want %v to %v", path.Time(), path.Points[len(path.Points)-1], weightTime(tc.want), sp.Point)
			}
		})
	}
	// A car at a junction (node 3, heading east along 3–4) may turn onto
	// any road there: north to node 0 directly, not via node 4 and back.
	times, _, err := g.DriveTimesFacing([]LatLng{town[3]}, []float64{90}, town[0])
	if err != nil || times[0] != weightTime(townWeight(0, 3)) {
		t.Errorf("from the junction: %v %v, want %v", times, err, weightTime(townWeight(0, 3)))
	}
	// Without headings, or with unknown ones, it is DriveTimesTo.
	from := []LatLng{car, town[0], along(town[0], town[1], 0.3), town[4], along(town[3], town[4], 0.7)}
	want, wantM, err := g.DriveTimesTo(from, town[5])
	if err != nil {
		t.Fatal(err)
	}
	nan := make([]float64, len(from))
	for i := range nan {
		nan[i] = math.NaN()
	}
	got, gotM, err := g.DriveTimesFacing(from, nan, town[5])
	if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotM, wantM) {
		t.Errorf("unknown headings: %v %v %v, DriveTimesTo %v %v", got, gotM, err, want, wantM)
	}
	if _, _, err := g.DriveTimesFacing(from, nan[1:], town[5]); err == nil {
		t.Error("a heading missing: no error")
	}
}
