package roads

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"time"
)

// Speeds maps an OSM highway class (the value of the highway tag) to the
// speed in km/h assumed on it. Classes absent from the map are not
// drivable: the map is also the filter.
type Speeds map[string]float64

// DefaultSpeeds returns urban car speeds for every drivable highway class.
// They are deliberately conservative averages (junctions, lights, traffic),
// not speed limits; the maxspeed tag is not read.
func DefaultSpeeds() Speeds {
	return Speeds{
		"motorway": 90, "motorway_link": 50,
		"trunk": 70, "trunk_link": 40,
		"primary": 50, "primary_link": 35,
		"secondary": 45, "secondary_link": 30,
		"tertiary": 40, "tertiary_link": 30,
		"unclassified":  30,
		"residential":   25,
		"living_street": 10,
		"service":       15,
	}
}

// ErrBadSpeed is returned for a speed that is not a positive finite number.
var ErrBadSpeed = errors.New("roads: invalid speed")

// Validate reports whether every speed is positive and finite.
func (s Speeds) Validate() error {
	if len(s) == 0 {
		return fmt.Errorf("%w: no highway class has a speed", ErrBadSpeed)
	}
	for class, v := range s {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s = %v km/h", ErrBadSpeed, class, v)
		}
	}
	return nil
}

// BuildOptions configures [Build].
type BuildOptions struct {
	// Speeds per highway class; nil means DefaultSpeeds().
	Speeds Speeds
	// BBox, if set, keeps only road segments with both ends inside it.
	BBox *BBox
	// Progress, if set, receives one line per stage.
	Progress func(msg string)
	// Source is recorded in the file's metadata (e.g. the input file name).
	Source string
}

// BuildStats describes what Build read and produced.
type BuildStats struct {
	Ways, WaysKept    int           // ways read, drivable ways kept
	OSMNodes          int           // nodes read (inside the bbox, if any)
	Nodes, Segments   int           // graph nodes and road segments before the SCC filter
	SCCNodes, SCCSegs int           // kept: the largest strongly connected component
	Edges             int           // directed edges of the kept graph
	Shortcuts         int           // shortcuts added by contraction
	Read, Contract    time.Duration // wall time of the two stages
}

// Build reads an OSM PBF extract and returns the contracted road graph.
//
// Drivable ways are those whose highway class has a speed. Ways tagged
// area=yes, or closed to cars (motorcar, motor_vehicle, vehicle or access =
// no/private, the most specific present tag deciding), or with a
// reversible/alternating oneway, are skipped. oneway=yes/true/1 and -1/reverse
// are honoured; roundabouts (junction=roundabout/circular) and
// highway=motorway are one-way unless tagged otherwise. Turn restrictions,
// maxspeed and barriers are not read.
//
// Only the largest strongly connected component is kept, so every snapped
// point can reach every other: queries never answer "unreachable" between
// points that snapped.
func Build(ctx context.Context, r io.Reader, opts BuildOptions) (*Graph, BuildStats, error) {
	var st BuildStats
	if opts.Speeds == nil {
		opts.Speeds = DefaultSpeeds()
	}
	if err := opts.Speeds.Validate(); err != nil {
		return nil, st, err
	}
	if opts.BBox != nil {
		if err := opts.BBox.Validate(); err != nil {
			return nil, st, err
		}
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	start := time.Now()
	b, err := readBase(ctx, r, opts, &st, progress)
	if err != nil {
		return nil, st, err
	}
	st.Read = time.Since(start)
	if len(b.segs) == 0 {
		return nil, st, fmt.Errorf("roads: no drivable roads in the input%s", bboxNote(opts.BBox))
	}
	progress(fmt.Sprintf("kept largest strongly connected component: %d of %d nodes, %d of %d segments",
		st.SCCNodes, st.Nodes, st.SCCSegs, st.Segments))
	start = time.Now()
	g, shortcuts, err := contract(ctx, b, progress)
	if err != nil {
		return nil, st, err
	}
	st.Contract = time.Since(start)
	st.Edges = len(b.edges())
	st.Shortcuts = shortcuts
	g.meta = metadata{Source: opts.Source, BBox: opts.BBox, Speeds: opts.Speeds}
	g.init(defaultMaxSnap)
	progress(fmt.Sprintf("contracted %d nodes in %v: %d shortcuts, %d upward + %d downward arcs",
		len(g.lat), st.Contract.Round(time.Millisecond), shortcuts, len(g.upHead), len(g.dnHead)))
	return g, st, nil
}

func bboxNote(b *BBox) string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf(" inside the bounding box %v,%v,%v,%v", b.MinLat, b.MinLng, b.MaxLat, b.MaxLng)
}

// Weights: one uint64 per arc, the travel time in milliseconds in the high
// 32 bits and the length in centimetres in the low 32 bits. Sums compare
// lexicographically (time, then distance), so the fastest path is unique in
// cost, and the distance of the fastest path comes out of the same addition.
// Paths stay below 2^32 cm (42,949 km), so the distance never carries into
// the time.
const noArc = math.MaxUint64

func makeWeight(meters, kmh float64) uint64 {
	ms := math.Round(meters / (kmh / 3.6) * 1000)
	cm := math.Round(meters * 100)
	return uint64(ms)<<32 | uint64(cm)
}

func weightTime(w uint64) time.Duration { return time.Duration(w>>32) * time.Millisecond }
func weightMeters(w uint64) float64     { return float64(w&0xffffffff) / 100 }

// scaleWeight is the cost of the fraction f of an arc, rounded per component.
func scaleWeight(w uint64, f float64) uint64 {
	ms := math.Round(float64(w>>32) * f)
	cm := math.Round(float64(w&0xffffffff) * f)
	return uint64(ms)<<32 | uint64(cm)
}

// segment is one piece of road between two consecutive way nodes: the
// geometry snapping uses, and the arcs of the uncontracted graph.
type segment struct {
	u, v     uint32
	fwd, bwd uint64 // u→v and v→u weights, noArc if that direction is closed
}

// baseGraph is the uncontracted graph: node positions and segments.
type baseGraph struct {
	lat, lng []int32
	segs     []segment
}

type arc struct {
	from, to uint32
	w        uint64
}

func (b *baseGraph) edges() []arc {
	var out []arc
	for _, s := range b.segs {
		if s.fwd != noArc {
			out = append(out, arc{s.u, s.v, s.fwd})
		}
		if s.bwd != noArc {
			out = append(out, arc{s.v, s.u, s.bwd})
		}
	}
	return out
}

type direction uint8

const (
	dirBoth direction = iota
	dirFwd
	dirBwd
)

// wayClass decides whether a way is drivable, its speed and direction.
func wayClass(keys, vals []string, speeds Speeds) (kmh float64, dir direction, ok bool) {
	tag := func(k string) (string, bool) {
		for i := range keys {
			if keys[i] == k {
				return vals[i], true
			}
		}
		return "", false
	}
	hw, _ := tag("highway")
	kmh, ok = speeds[hw]
	if !ok {
		return 0, 0, false
	}
	if a, _ := tag("area"); a == "yes" {
		return 0, 0, false
	}
	for _, k := range []string{"motorcar", "motor_vehicle", "vehicle", "access"} {
		if v, present := tag(k); present {
			if v == "no" || v == "private" {
				return 0, 0, false
			}
			break
		}
	}
	j, _ := tag("junction")
	switch ow, present := tag("oneway"); {
	case ow == "yes" || ow == "true" || ow == "1":
		dir = dirFwd
	case ow == "-1" || ow == "reverse":
		dir = dirBwd
	case ow == "reversible" || ow == "alternating":
		return 0, 0, false
	case present && (ow == "no" || ow == "false" || ow == "0"):
		dir = dirBoth
	case j == "roundabout" || j == "circular" || hw == "motorway":
		dir = dirFwd
	}
	return kmh, dir, true
}

type rawWay struct {
	start, end int // range in refs
	kmh        float64
	dir        direction
}

func readBase(ctx context.Context, r io.Reader, opts BuildOptions, st *BuildStats, progress func(string)) (*baseGraph, error) {
	var (
		ids      []int64
		lats     []int32
		lngs     []int32
		ways     []rawWay
		refs     []int64
		ctxErr   error
		counter  int
		lastNote = time.Now()
	)
	h := pbfHandler{
		node: func(id int64, lat, lng int32) {
			if opts.BBox != nil && !opts.BBox.containsE7(lat, lng) {
				return
			}
			ids = append(ids, id)
			lats = append(lats, lat)
			lngs = append(lngs, lng)
		},
		way: func(id int64, keys, vals []string, wrefs []int64) {
			st.Ways++
			counter++
			if counter%4096 == 0 {
				if ctxErr == nil {
					ctxErr = ctx.Err()
				}
				if time.Since(lastNote) > 2*time.Second {
					progress(fmt.Sprintf("read %d ways, %d drivable", st.Ways, st.WaysKept))
					lastNote = time.Now()
				}
			}
			kmh, dir, ok := wayClass(keys, vals, opts.Speeds)
			if !ok || len(wrefs) < 2 {
				return
			}
			st.WaysKept++
			ways = append(ways, rawWay{start: len(refs), end: len(refs) + len(wrefs), kmh: kmh, dir: dir})
			refs = append(refs, wrefs...)
		},
	}
	progress("reading OSM PBF")
	if err := readPBF(r, h); err != nil {
		return nil, err
	}
	if ctxErr != nil {
		return nil, ctxErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st.OSMNodes = len(ids)
	progress(fmt.Sprintf("read %d ways (%d drivable), %d nodes", st.Ways, st.WaysKept, st.OSMNodes))
	if !slices.IsSorted(ids) {
		sort.Sort(nodeSorter{ids, lats, lngs})
	}

	// Number the nodes the drivable ways use; merge duplicate segments.
	graphID := make(map[int64]uint32)
	b := &baseGraph{}
	nodeOf := func(osmID int64) (uint32, bool) {
		if g, ok := graphID[osmID]; ok {
			return g, true
		}
		i, found := slices.BinarySearch(ids, osmID)
		if !found {
			return 0, false // outside the bbox, or missing from the extract
		}
		g := uint32(len(b.lat))
		graphID[osmID] = g
		b.lat = append(b.lat, lats[i])
		b.lng = append(b.lng, lngs[i])
		return g, true
	}
	segIndex := make(map[uint64]int)
	for _, w := range ways {
		for i := w.start; i+1 < w.end; i++ {
			u, ok1 := nodeOf(refs[i])
			v, ok2 := nodeOf(refs[i+1])
			if !ok1 || !ok2 || u == v {
				continue
			}
			meters := distance(e7(b.lat[u], b.lng[u]), e7(b.lat[v], b.lng[v]))
			wt := makeWeight(meters, w.kmh)
			fwd, bwd := wt, wt
			switch w.dir {
			case dirFwd:
				bwd = noArc
			case dirBwd:
				fwd = noArc
			}
			if u > v {
				u, v, fwd, bwd = v, u, bwd, fwd
			}
			key := uint64(u)<<32 | uint64(v)
			if j, ok := segIndex[key]; ok {
				s := &b.segs[j]
				s.fwd, s.bwd = min(s.fwd, fwd), min(s.bwd, bwd)
				continue
			}
			segIndex[key] = len(b.segs)
			b.segs = append(b.segs, segment{u, v, fwd, bwd})
		}
	}
	st.Nodes, st.Segments = len(b.lat), len(b.segs)
	b = largestSCC(b)
	st.SCCNodes, st.SCCSegs = len(b.lat), len(b.segs)
	return b, nil
}

type nodeSorter struct {
	ids        []int64
	lats, lngs []int32
}

func (s nodeSorter) Len() int           { return len(s.ids) }
func (s nodeSorter) Less(i, j int) bool { return s.ids[i] < s.ids[j] }
func (s nodeSorter) Swap(i, j int) {
	s.ids[i], s.ids[j] = s.ids[j], s.ids[i]
	s.lats[i], s.lats[j] = s.lats[j], s.lats[i]
	s.lngs[i], s.lngs[j] = s.lngs[j], s.lngs[i]
}

// largestSCC keeps the largest strongly connected component (iterative
// Tarjan) and renumbers its nodes densely.
func largestSCC(b *baseGraph) *baseGraph {
	n := len(b.lat)
	first, head := csr(n, b.edges())
	const unvisited = -1
	index := make([]int32, n)
	low := make([]int32, n)
	onStack := make([]bool, n)
	comp := make([]int32, n)
	for i := range index {
		index[i] = unvisited
		comp[i] = -1
	}
	var stack []uint32
	type frame struct {
		v    uint32
		next uint32 // next arc to look at
	}
	var call []frame
	var next int32
	var ncomp int32
	var sizes []int
	for root := range n {
		if index[root] != unvisited {
			continue
		}
		call = append(call, frame{uint32(root), first[root]})
		index[root], low[root] = next, next
		next++
		stack = append(stack, uint32(root))
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.next < first[v+1] {
				w := head[f.next]
				f.next++
				if index[w] == unvisited {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, first[w]})
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			if low[v] == index[v] {
				size := 0
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					size++
					if w == v {
						break
					}
				}
				sizes = append(sizes, size)
				ncomp++
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
		}
	}
	best := int32(0)
	for c, s := range sizes {
		if s > sizes[best] {
			best = int32(c)
		}
	}
	newID := make([]uint32, n)
	out := &baseGraph{}
	for v := range n {
		if comp[v] == best {
			newID[v] = uint32(len(out.lat))
			out.lat = append(out.lat, b.lat[v])
			out.lng = append(out.lng, b.lng[v])
		}
	}
	for _, s := range b.segs {
		if comp[s.u] != best || comp[s.v] != best {
			continue
		}
		// Both ends in the component: each open direction of the segment
		// is an arc inside it.
		out.segs = append(out.segs, segment{newID[s.u], newID[s.v], s.fwd, s.bwd})
	}
	return out
}

// csr turns arcs into first/head adjacency arrays (by from).
func csr(n int, arcs []arc) (first, head []uint32) {
	first = make([]uint32, n+1)
	for _, a := range arcs {
		first[a.from+1]++
	}
	for i := range n {
		first[i+1] += first[i]
	}
	head = make([]uint32, len(arcs))
	pos := slices.Clone(first[:n])
	for _, a := range arcs {
		head[pos[a.from]] = a.to
		pos[a.from]++
	}
	return first, head
}
