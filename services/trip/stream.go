package trip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// The trip event stream (NATS JetStream). One message per committed trip
// change, protobuf hexride.trip.v1.TripEvent, on the subject
//
//	hexride.trips.v1.<region>.<trip_id>
//
// One subject per trip: JetStream keeps a subject's messages in publish
// order and the relay publishes a trip's events in version order, so a
// consumer sees each trip's events in order; the region token lets a
// consumer (or a mirror to another region) take one region
// (hexride.trips.v1.us-east1.>). The version is in the subject, so a
// breaking change of the message is a new subject tree (v2) beside this one.
const (
	// StreamName is the JetStream stream holding the trip events.
	StreamName = "HEXRIDE_TRIPS"
	// SubjectPrefix is the subject tree of version 1 of the stream.
	SubjectPrefix = "hexride.trips.v1"
	// SubjectAll matches every trip event of version 1.
	SubjectAll = SubjectPrefix + ".>"
	// HeaderSchema names the message type of the payload.
	HeaderSchema = "Hexride-Schema"
	// Schema is HeaderSchema's value: the protobuf message's full name.
	Schema = "hexride.trip.v1.TripEvent"
	// DuplicateWindow is how long JetStream remembers message ids to drop
	// re-published events (Nats-Msg-Id = event id).
	DuplicateWindow = 2 * time.Minute
)

// EventSubject is the subject of a trip's events.
func EventSubject(region string, tripID uuid.UUID) string {
	return SubjectPrefix + "." + subjectToken(region) + "." + tripID.String()
}

// subjectToken makes s one subject token: no dots, wildcards or spaces.
func subjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}

// StreamConfig is the stream the relay creates when it does not exist
// (an operator may create it beforehand with their own limits, replicas
// and placement; the relay then leaves it alone). storage is
// jetstream.FileStorage in production, MemoryStorage for `hexride dev`.
func StreamConfig(storage jetstream.StorageType) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "hexride trip events (hexride.trip.v1.TripEvent), one subject per trip",
		Subjects:    []string{SubjectAll},
		Storage:     storage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
}

// EnsureStream returns the stream, creating it with cfg if it is missing.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("trip event stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// StreamEventToProto is the stream message of ev.
func StreamEventToProto(ev store.Event, publishedAt time.Time) *tripv1.TripEvent {
	return &tripv1.TripEvent{
		Event:       EventToProto(ev),
		TripVersion: ev.Version,
		Region:      ev.Trip.Region,
		PublishedAt: ts(publishedAt),
	}
}

// streamMsg is the JetStream message of ev, with the event id as its
// message id.
func streamMsg(ev store.Event, publishedAt time.Time) (*nats.Msg, error) {
	data, err := proto.Marshal(StreamEventToProto(ev, publishedAt))
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	m := nats.NewMsg(EventSubject(ev.Trip.Region, ev.TripID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, ev.ID.String())
	m.Header.Set(HeaderSchema, Schema)
	return m, nil
}

// eventFromStream decodes a stream message back into a store event (what
// the hub fans out to watchers).
func eventFromStream(data []byte) (store.Event, error) {
	var m tripv1.TripEvent
	if err := proto.Unmarshal(data, &m); err != nil {
		return store.Event{}, err
	}
	e := m.GetEvent()
	id, err := uuid.Parse(e.GetEventId())
	if err != nil {
		return store.Event{}, fmt.Errorf("event id %q: %w", e.GetEventId(), err)
	}
	t, err := tripFromProto(e.GetTrip())
	if err != nil {
		return store.Event{}, err
	}
	t.UpdatedAt = asTime(e.GetOccurredAt())
	return store.Event{
		ID:       id,
		TripID:   t.ID,
		Type:     eventFromProto[e.GetType()],
		From:     tripapi.StateOf(e.GetFromState()),
		To:       tripapi.StateOf(e.GetToState()),
		Actor:    actorFromProto[e.GetActor()],
		ActorID:  e.GetActorId(),
		Reason:   e.GetReason(),
		DriverID: e.GetDriverId(),
		Version:  m.GetTripVersion(),
		At:       asTime(e.GetOccurredAt()),
		Trip:     t,
	}, nil
}

func tripFromProto(p *commonv1.Trip) (store.Trip, error) {
	id, err := uuid.Parse(p.GetId())
	if err != nil {
		return store.Trip{}, fmt.Errorf("trip id %q: %w", p.GetId(), err)
	}
	t := store.Trip{
		ID:        id,
		Product:   p.GetProduct().Key(),
		Pickup:    latLngOf(p.GetPickup()),
		Dropoff:   latLngOf(p.GetDropoff()),
		QuoteID:   p.GetQuoteId(),
		Region:    p.GetRegion(),
		CreatedAt: asTime(p.GetCreatedAt()),
		Rating:    p.GetRating(),
		Trip: lifecycle.Trip{
			RiderID:     p.GetRiderId(),
			DriverID:    p.GetDriverId(),
			State:       tripapi.StateOf(p.GetState()),
			QuotedFare:  lifecycle.Money{Minor: p.GetQuotedFare().GetAmountMinor(), Currency: p.GetQuotedFare().GetCurrency()},
			AssignedAt:  asTime(p.GetAssignedAt()),
			ArrivedAt:   asTime(p.GetArrivedAt()),
			StartedAt:   asTime(p.GetStartedAt()),
			CompletedAt: asTime(p.GetCompletedAt()),
			EndedAt:     asTime(p.GetEndedAt()),
			CancelledBy: actorFromProto[p.GetCancelledBy()],
			EndReason:   p.GetEndReason(),
			Version:     p.GetVersion(),
		},
	}
	if f := p.GetFinalFare(); f != nil {
		t.FinalFare = lifecycle.Money{Minor: f.GetAmountMinor(), Currency: f.GetCurrency()}
	}
	return t, nil
}

func asTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime().UTC()
}

// errStreamUnavailable ends a watch the event stream cannot serve.
func errStreamUnavailable() error {
	return withReason(tripapi.Classification{Code: codes.Unavailable, Reason: tripapi.ReasonStoreUnavailable, Message: "trip event stream unavailable; watch again"})
}
