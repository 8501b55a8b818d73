package console

import (
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

// The API's JSON shapes. Enums are short upper-case names (REQUESTED,
// ASSIGNED, DISPATCHER, AVAILABLE…); times are RFC 3339; positions are
// {lat, lng}; rings are closed lists of [lat, lng] pairs.

type latLngJSON struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

type moneyJSON struct {
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

type tripJSON struct {
	ID          string      `json:"id"`
	RiderID     string      `json:"rider_id"`
	DriverID    string      `json:"driver_id,omitempty"`
	State       string      `json:"state"`
	Product     string      `json:"product"`
	Pickup      *latLngJSON `json:"pickup,omitempty"`
	Dropoff     *latLngJSON `json:"dropoff,omitempty"`
	QuotedFare  *moneyJSON  `json:"quoted_fare,omitempty"`
	FinalFare   *moneyJSON  `json:"final_fare,omitempty"`
	Region      string      `json:"region,omitempty"`
	CreatedAt   *time.Time  `json:"created_at,omitempty"`
	AssignedAt  *time.Time  `json:"assigned_at,omitempty"`
	EndedAt     *time.Time  `json:"ended_at,omitempty"`
	CancelledBy string      `json:"cancelled_by,omitempty"`
	EndReason   string      `json:"end_reason,omitempty"`
	Version     int64       `json:"version"`
}

type eventJSON struct {
	ID         string     `json:"id"`
	TripID     string     `json:"trip_id"`
	Type       string     `json:"type"`
	From       string     `json:"from_state"`
	To         string     `json:"to_state"`
	Actor      string     `json:"actor"`
	ActorID    string     `json:"actor_id,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	DriverID   string     `json:"driver_id,omitempty"`
	OccurredAt *time.Time `json:"occurred_at,omitempty"`
	Trip       *tripJSON  `json:"trip,omitempty"`
}

type memberJSON struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

type partitionJSON struct {
	ID       string       `json:"id"`
	Owner    memberJSON   `json:"owner"`
	Drivers  int32        `json:"drivers"`
	Boundary [][2]float64 `json:"boundary"`
}

type cellJSON struct {
	ID              string       `json:"id"`
	SupplyAvailable int32        `json:"supply_available"`
	SupplyBusy      int32        `json:"supply_busy"`
	Demand          int32        `json:"demand"`
	Surge           float64      `json:"surge"`
	Boundary        [][2]float64 `json:"boundary"`
}

type driverJSON struct {
	ID      string  `json:"id"`
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
	Heading float32 `json:"heading"`
	Status  string  `json:"status"`
	Product string  `json:"product"`
	Gateway string  `json:"gateway"`
	// Flagged: the driver's gateway refused some of its samples as
	// implausible (see snapshot.Flagged).
	Flagged bool `json:"flagged,omitempty"`
}

// flaggedJSON is a driver whose samples a gateway refused.
type flaggedJSON struct {
	ID      string     `json:"id"`
	Refused int32      `json:"refused"`
	Reason  string     `json:"reason"`
	At      *time.Time `json:"at"`
	Gateway string     `json:"gateway"`
}

func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func stateName(s commonv1.TripState) string { return enumName(s.String(), "TRIP_STATE_") }

func tsPtr(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func latLngOf(p *commonv1.LatLng) *latLngJSON {
	if p == nil {
		return nil
	}
	return &latLngJSON{Lat: p.GetLat(), Lng: p.GetLng()}
}

func moneyOf(m *commonv1.Money) *moneyJSON {
	if m == nil {
		return nil
	}
	return &moneyJSON{AmountMinor: m.GetAmountMinor(), Currency: m.GetCurrency()}
}

func tripOf(t *commonv1.Trip) *tripJSON {
	if t == nil {
		return nil
	}
	out := &tripJSON{
		ID: t.GetId(), RiderID: t.GetRiderId(), DriverID: t.GetDriverId(),
		State:   stateName(t.GetState()),
		Product: enumName(t.GetProduct().String(), "PRODUCT_"),
		Pickup:  latLngOf(t.GetPickup()), Dropoff: latLngOf(t.GetDropoff()),
		QuotedFare: moneyOf(t.GetQuotedFare()), FinalFare: moneyOf(t.GetFinalFare()),
		Region:    t.GetRegion(),
		CreatedAt: tsPtr(t.GetCreatedAt()), AssignedAt: tsPtr(t.GetAssignedAt()), EndedAt: tsPtr(t.GetEndedAt()),
		EndReason: t.GetEndReason(), Version: t.GetVersion(),
	}
	if t.GetCancelledBy() != commonv1.Actor_ACTOR_UNSPECIFIED {
		out.CancelledBy = enumName(t.GetCancelledBy().String(), "ACTOR_")
	}
	return out
}

func tripsOf(ts []*commonv1.Trip) []*tripJSON {
	out := make([]*tripJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, tripOf(t))
	}
	return out
}

func eventOf(e *commonv1.TripEvent) *eventJSON {
	if e == nil {
		return nil
	}
	return &eventJSON{
		ID: e.GetEventId(), TripID: e.GetTripId(),
		Type: enumName(e.GetType().String(), "TRIP_EVENT_TYPE_"),
		From: stateName(e.GetFromState()), To: stateName(e.GetToState()),
		Actor: enumName(e.GetActor().String(), "ACTOR_"), ActorID: e.GetActorId(),
		Reason: e.GetReason(), DriverID: e.GetDriverId(),
		OccurredAt: tsPtr(e.GetOccurredAt()), Trip: tripOf(e.GetTrip()),
	}
}

func driverOf(d *matchingv1.NearbyDriver) driverJSON {
	p := d.GetPosition()
	return driverJSON{
		ID: p.GetDriverId(), Lat: round6(p.GetPosition().GetLat()), Lng: round6(p.GetPosition().GetLng()),
		Heading: p.GetHeadingDeg(),
		Status:  enumName(d.GetStatus().String(), "DRIVER_STATUS_"),
		Product: enumName(d.GetProduct().String(), "PRODUCT_"),
		Gateway: d.GetGatewayAddress(),
	}
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }
