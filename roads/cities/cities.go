// Package cities embeds prebuilt road graphs for development and tests.
//
// wilmington.roads is Wilmington, Delaware (lat 39.70–39.80, lng -75.62 to
// -75.50), built from the Delaware extract that github.com/paulmach/osm
// v0.8.0 ships. Map data © OpenStreetMap contributors, available under the
// Open Database License (ODbL); see README.md here. Rebuild it with
// `make roads-cities`; TestWilmingtonIsReproducible fails if the committed
// file differs from a fresh build.
package cities

import (
	_ "embed"

	"github.com/hexride/hexride/roads"
)

//go:embed wilmington.roads
var wilmington []byte

// WilmingtonBBox is the area the embedded Wilmington graph covers.
var WilmingtonBBox = roads.BBox{MinLat: 39.70, MinLng: -75.62, MaxLat: 39.80, MaxLng: -75.50}

// Attribution is the notice to show wherever the map data is used.
const Attribution = "© OpenStreetMap contributors, data available under the Open Database License (ODbL)"

// Wilmington decodes the embedded Wilmington, DE road graph (a few tens of
// milliseconds; call once and share the Graph).
func Wilmington(opts ...roads.Option) (*roads.Graph, error) {
	return roads.Read(wilmington, opts...)
}
