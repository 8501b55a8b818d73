// Package roads turns an OpenStreetMap extract into a compact road graph and
// answers exact shortest driving times on it, fast: contraction hierarchies
// (CH) for point-to-point queries, and one point against many (a pickup
// against K drivers) with one shared search plus one pruned search per
// driver.
//
// Build reads an OSM PBF file (drivable highway classes, one-way streets,
// per-class speeds), keeps the largest strongly connected component so that
// any two snapped points are mutually reachable, contracts it, and returns a
// [Graph]. A Graph writes to and reads from a versioned, checksummed,
// little-endian file (see file.go); [Load] is what servers call at start.
//
// Queries snap each point to the nearest road segment (a grid index, with a
// maximum snap distance) and start part-way along that segment, honouring
// its direction. Costs are travel time, with distance carried alongside:
// every answer is the time of the fastest path and that path's length.
// Results are exact: the tests compare them with plain Dijkstra on the
// uncontracted graph.
//
// The package is pure Go. It does not import geo (geo links H3 through cgo)
// or the osmpbf reader of github.com/paulmach/osm (which links a cgo zlib
// when cgo is on); it has its own copy of the haversine distance, identical
// to geo.Distance, and a minimal PBF decoder.
package roads
