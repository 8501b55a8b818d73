// Package geo owns every geometric fact hexride relies on: H3 cells (the only
// place that imports github.com/uber/h3-go, and so the only cgo user), the
// canonical great-circle distance, bearings, service-area polygons and the
// conservative cell bounds the dispatch search uses to prove it has found the
// nearest drivers.
//
// Positions are WGS84 degrees ([LatLng]). Distances are metres on a sphere of
// radius [EarthRadius]; [Distance] is the one distance every other package
// (and every test oracle) uses, so answers computed in different places agree
// bit for bit.
//
// The H3 calls cost about a microsecond each, so hot paths cache what they
// need: [Geometry] returns a cell's centre, inscribed and circumscribed radii
// and edge planes once, after which membership and distance bounds are plain
// arithmetic. Cell resolution and parent are pure bit operations.
package geo
