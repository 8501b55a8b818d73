package store_test

import (
	"testing"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/trip/store"
)

// TestCreateHashProductSpelling: a create request retried across the
// change of product spelling ("STANDARD" → "standard") hashes the same, so
// its idempotency key still returns the trip it created.
func TestCreateHashProductSpelling(t *testing.T) {
	req := store.CreateTrip{IdempotencyKey: "k", RiderID: "r", Product: "STANDARD",
		Pickup: geo.LatLng{Lat: 1, Lng: 2}, Dropoff: geo.LatLng{Lat: 3, Lng: 4}, QuoteID: "q"}
	lower := req
	lower.Product = "standard"
	if req.Hash() != lower.Hash() {
		t.Fatal("the product's spelling changes the request hash")
	}
	other := req
	other.Product = "xl"
	if req.Hash() == other.Hash() {
		t.Fatal("a different product hashes the same")
	}
}
