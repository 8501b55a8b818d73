package node

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/roads/cities"
	"github.com/hexride/hexride/services/console"
	"github.com/hexride/hexride/services/rider"
)

// EmbeddedPrefix marks a --roads value naming a graph built into the
// binary rather than a file: "embedded:wilmington".
const EmbeddedPrefix = "embedded:"

// embedded are the graphs built into the binary, by --roads name.
var embedded = map[string]func(...roads.Option) (*roads.Graph, error){
	"wilmington": cities.Wilmington,
}

// ErrBadRoads is a --roads value that names no usable road graph.
var ErrBadRoads = errors.New("node: bad --roads")

// EmbeddedRoads lists the names --roads embedded:NAME accepts.
func EmbeddedRoads() []string {
	names := make([]string, 0, len(embedded))
	for n := range embedded {
		names = append(names, EmbeddedPrefix+n)
	}
	sort.Strings(names)
	return names
}

// validateRoads checks a --roads value without loading it.
func validateRoads(spec string) error {
	if spec == "" {
		return nil
	}
	if name, ok := strings.CutPrefix(spec, EmbeddedPrefix); ok {
		if _, ok := embedded[name]; !ok {
			return fmt.Errorf("%w %q: no embedded graph %q (have %s)", ErrBadRoads, spec, name, strings.Join(EmbeddedRoads(), ", "))
		}
		return nil
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadRoads, spec, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w %q: not a regular file (build one with: hexride roads build)", ErrBadRoads, spec)
	}
	return nil
}

// LoadRoads loads the graph a --roads value names ("" loads none: nil).
func LoadRoads(spec string) (*roads.Graph, error) {
	if err := validateRoads(spec); err != nil || spec == "" {
		return nil, err
	}
	var (
		g   *roads.Graph
		err error
	)
	if name, ok := strings.CutPrefix(spec, EmbeddedPrefix); ok {
		g, err = embedded[name]()
	} else {
		g, err = roads.Load(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadRoads, spec, err)
	}
	return g, nil
}

// roadNetwork adapts a roads.Graph to what dispatch (pickup ETAs) and
// rider pricing (trip distance and duration) declare they need: the same
// calls in geo's coordinates. roads.LatLng has geo.LatLng's fields, so the
// conversion is a copy.
type roadNetwork struct{ g *roads.Graph }

var (
	_ dispatch.RoadETA = roadNetwork{}
	_ rider.RoadRoute  = roadNetwork{}
)

// DriveTimesTo implements dispatch.RoadETA; roads.Unreachable (-1) passes
// through as the negative time dispatch reads as "off the network".
func (r roadNetwork) DriveTimesTo(from []geo.LatLng, headings []float64, to geo.LatLng) ([]time.Duration, []float64, error) {
	pts := make([]roads.LatLng, len(from))
	for i, p := range from {
		pts[i] = roads.LatLng(p)
	}
	return r.g.DriveTimesFacing(pts, headings, roads.LatLng(to))
}

// Route implements rider.RoadRoute.
func (r roadNetwork) Route(from, to geo.LatLng) (time.Duration, float64, error) {
	return r.g.Route(roads.LatLng(from), roads.LatLng(to))
}

// loadRoads loads cfg.Roads for the services that estimate with it
// (matching, rider) and says in the log what they will use. nil: none.
func (n *Node) loadRoads() (*roadNetwork, error) {
	var users []string
	for _, s := range []string{Matching, Rider} {
		if n.cfg.Has(s) {
			users = append(users, s)
		}
	}
	if n.cfg.Console && n.cfg.HTTPAddr != "" {
		users = append(users, "console")
	}
	if len(users) == 0 {
		return nil, nil
	}
	if n.cfg.Roads == "" {
		n.logger.Warn("no road network (--roads): pickup ETAs, ranking and fares use the straight-line estimate (distance × road factor at a constant speed)", "services", users)
		return nil, nil
	}
	start := time.Now()
	g, err := LoadRoads(n.cfg.Roads)
	if err != nil {
		return nil, err
	}
	n.logger.Info("road network loaded: pickup ETAs, ranking and fares follow its roads (straight-line estimate only for points off it)",
		"roads", n.cfg.Roads, "source", g.Source(), "nodes", g.Nodes(), "segments", g.Segments(),
		"load_ms", time.Since(start).Milliseconds(), "services", users, "attribution", cities.Attribution)
	n.roads = g
	return &roadNetwork{g: g}, nil
}

// roadETA hands the network to matching as dispatch's interface: nil when
// there is none (never a typed nil).
func (r *roadNetwork) roadETA() dispatch.RoadETA {
	if r == nil {
		return nil
	}
	return *r
}

// streetMap hands the loaded graph to the console's map (nil: none).
func (n *Node) streetMap() *console.StreetMap {
	if n.roads == nil {
		return nil
	}
	return &console.StreetMap{
		// Every graph is built from OpenStreetMap data (hexride roads build
		// reads OSM extracts only), so the notice is always the ODbL one.
		Attribution: cities.Attribution,
		Segments: func(fn func(a, b geo.LatLng)) {
			n.roads.EachSegment(func(a, b roads.LatLng) { fn(geo.LatLng(a), geo.LatLng(b)) })
		},
	}
}
