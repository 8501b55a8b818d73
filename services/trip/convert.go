package trip

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

var (
	eventToProto = map[lifecycle.Event]commonv1.TripEventType{
		lifecycle.EventCreate:        commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED,
		lifecycle.EventAssign:        commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED,
		lifecycle.EventArrive:        commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED,
		lifecycle.EventStart:         commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED,
		lifecycle.EventComplete:      commonv1.TripEventType_TRIP_EVENT_TYPE_COMPLETED,
		lifecycle.EventCancel:        commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED,
		lifecycle.EventNoDriverFound: commonv1.TripEventType_TRIP_EVENT_TYPE_NO_DRIVER_FOUND,
		lifecycle.EventUnassign:      commonv1.TripEventType_TRIP_EVENT_TYPE_UNASSIGNED,
		lifecycle.EventRedispatch:    commonv1.TripEventType_TRIP_EVENT_TYPE_REDISPATCHED,
	}
	eventFromProto = invert(eventToProto)

	actorToProto = map[lifecycle.Actor]commonv1.Actor{
		lifecycle.ActorRider:      commonv1.Actor_ACTOR_RIDER,
		lifecycle.ActorDriver:     commonv1.Actor_ACTOR_DRIVER,
		lifecycle.ActorDispatcher: commonv1.Actor_ACTOR_DISPATCHER,
		lifecycle.ActorSystem:     commonv1.Actor_ACTOR_SYSTEM,
	}
	actorFromProto = invert(actorToProto)
)

func invert[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

func latLngOf(p *commonv1.LatLng) geo.LatLng { return geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()} }

func latLngToProto(p geo.LatLng) *commonv1.LatLng { return &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng} }

func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, tripapi.InvalidArgument("trip id %q is not a UUID", s)
	}
	return id, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func money(m lifecycle.Money) *commonv1.Money {
	if m.IsZero() {
		return nil
	}
	return &commonv1.Money{AmountMinor: m.Minor, Currency: m.Currency}
}

// TripToProto converts a store trip.
func TripToProto(t store.Trip) *commonv1.Trip {
	return &commonv1.Trip{
		Id:          t.ID.String(),
		RiderId:     t.RiderID,
		DriverId:    t.DriverID,
		State:       tripapi.StateToProto(t.State),
		Product:     commonv1.ProductOfKey(t.Product),
		Pickup:      latLngToProto(t.Pickup),
		Dropoff:     latLngToProto(t.Dropoff),
		QuotedFare:  money(t.QuotedFare),
		FinalFare:   money(t.FinalFare),
		QuoteId:     t.QuoteID,
		Region:      t.Region,
		CreatedAt:   ts(t.CreatedAt),
		AssignedAt:  ts(t.AssignedAt),
		ArrivedAt:   ts(t.ArrivedAt),
		StartedAt:   ts(t.StartedAt),
		CompletedAt: ts(t.CompletedAt),
		EndedAt:     ts(t.EndedAt),
		CancelledBy: actorToProto[t.CancelledBy],
		EndReason:   t.EndReason,
		Version:     t.Version,
		Rating:      t.Rating,
	}
}

// EventToProto converts a store event.
func EventToProto(ev store.Event) *commonv1.TripEvent {
	return &commonv1.TripEvent{
		EventId:    ev.ID.String(),
		TripId:     ev.TripID.String(),
		Type:       eventToProto[ev.Type],
		FromState:  tripapi.StateToProto(ev.From),
		ToState:    tripapi.StateToProto(ev.To),
		Actor:      actorToProto[ev.Actor],
		ActorId:    ev.ActorID,
		Reason:     ev.Reason,
		DriverId:   ev.DriverID,
		OccurredAt: ts(ev.At),
		Trip:       TripToProto(ev.Trip),
	}
}
