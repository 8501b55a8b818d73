package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
)

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{status.Error(codes.InvalidArgument, "x"), 400},
		{status.Error(codes.NotFound, "x"), 404},
		{status.Error(codes.FailedPrecondition, "x"), 409},
		{status.Error(codes.Aborted, "x"), 409},
		{status.Error(codes.AlreadyExists, "x"), 409},
		{status.Error(codes.PermissionDenied, "x"), 403},
		{status.Error(codes.Unauthenticated, "x"), 401},
		{status.Error(codes.ResourceExhausted, "x"), 429},
		{status.Error(codes.Unavailable, "x"), 503},
		{status.Error(codes.DeadlineExceeded, "x"), 504},
		{status.Error(codes.Internal, "x"), 500},
		{status.Error(codes.Unknown, "x"), 500},
		{fmt.Errorf("wrapped: %w", status.Error(codes.NotFound, "x")), 404},
		{errBadRequest("x"), 400},
		{fmt.Errorf("wrapped: %w", errNotFound("x")), 404},
		{context.DeadlineExceeded, 504},
		{errors.New("plain"), 500},
	}
	for _, tc := range tests {
		if got := httpStatus(tc.err); got != tc.want {
			t.Errorf("httpStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if got := errorMessage(status.Error(codes.NotFound, "trip not found")); got != "trip not found" {
		t.Errorf("message %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"defaults", func(*Config) {}, nil},
		{"no dispatcher", func(c *Config) { c.DispatcherID = "" }, ErrNoDispatcherID},
		{"zero interval", func(c *Config) { c.SnapshotInterval = 0 }, ErrBadDuration},
		{"short window", func(c *Config) { c.KPIWindow = time.Second }, ErrBadDuration},
		{"too many drivers", func(c *Config) { c.MaxDrivers = 20001 }, ErrBadLimit},
		{"no buffer", func(c *Config) { c.ClientBuffer = 0 }, ErrBadLimit},
	}
	for _, tc := range tests {
		c := DefaultConfig()
		tc.mutate(&c)
		if err := c.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}); !errors.Is(err, ErrMissingDep) {
		t.Errorf("New without deps: %v", err)
	}
}

func TestParseStates(t *testing.T) {
	got, err := parseStates([]string{"requested,TRIP_STATE_COMPLETED", "active"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 { // the four active states and COMPLETED, deduplicated
		t.Errorf("states %v", got)
	}
	for _, bad := range []string{"lost", "UNSPECIFIED"} {
		if _, err := parseStates([]string{bad}); httpStatus(err) != http.StatusBadRequest {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func event(id string, typ commonv1.TripEventType, created, at time.Time) *commonv1.TripEvent {
	return &commonv1.TripEvent{
		TripId: id, Type: typ, OccurredAt: timestamppb.New(at),
		Trip: &commonv1.Trip{Id: id, CreatedAt: timestamppb.New(created)},
	}
}

func TestWindowKPIs(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	w := newWindow(5*time.Minute, 100)
	const (
		created  = commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED
		assigned = commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED
		none     = commonv1.TripEventType_TRIP_EVENT_TYPE_NO_DRIVER_FOUND
	)
	// Ten matched trips with waits 1..10 s, two minutes ago.
	for i := 1; i <= 10; i++ {
		c := now.Add(-2 * time.Minute)
		id := fmt.Sprint("m", i)
		w.observe(event(id, created, c, c), now)
		w.observe(event(id, assigned, c, c.Add(time.Duration(i)*time.Second)), now)
		w.observe(event(id, assigned, c, c.Add(time.Hour)), now) // a later re-assignment does not count
	}
	// One unmatched, two pending in the last minute, one too old to count.
	w.observe(event("u", created, now.Add(-3*time.Minute), now.Add(-3*time.Minute)), now)
	w.observe(event("u", none, now.Add(-3*time.Minute), now), now)
	w.observe(event("p1", created, now.Add(-30*time.Second), now.Add(-30*time.Second)), now)
	w.observe(event("p2", created, now.Add(-10*time.Second), now.Add(-10*time.Second)), now)
	w.observe(event("old", created, now.Add(-10*time.Minute), now.Add(-10*time.Minute)), now)

	k := w.compute(now)
	if k.RequestsPerMin != 2 || k.Matched != 10 || k.Unmatched != 1 || k.Pending != 2 {
		t.Fatalf("kpis %+v", k)
	}
	if k.MatchRate == nil || *k.MatchRate != 10.0/11 {
		t.Errorf("match rate %v", k.MatchRate)
	}
	if *k.TimeToMatchP50 != 5 || *k.TimeToMatchP95 != 10 {
		t.Errorf("p50 %v p95 %v", *k.TimeToMatchP50, *k.TimeToMatchP95)
	}
	// Four minutes later the matched trips have left the window.
	k = w.compute(now.Add(4 * time.Minute))
	if k.Matched != 0 || k.MatchRate != nil || k.TimeToMatchP50 != nil || k.Pending != 2 {
		t.Errorf("later kpis %+v", k)
	}
	// The count bound holds.
	small := newWindow(time.Hour, 3)
	for i := range 10 {
		small.observe(event(fmt.Sprint(i), created, now, now), now)
	}
	if n := len(small.order); n != 3 || len(small.trips) != 3 {
		t.Errorf("window holds %d trips", n)
	}
}

func TestHubDropsSlowSubscriber(t *testing.T) {
	h := newHub(2)
	fast, _ := h.subscribe()
	slow, _ := h.subscribe()
	for i := range 3 {
		h.broadcast([]byte{byte(i)})
		<-fast.ch
	}
	if _, open := <-drain(slow.ch); open {
		t.Fatal("slow subscriber still subscribed")
	}
	if h.count() != 1 {
		t.Fatalf("count %d", h.count())
	}
	h.close()
	if _, ok := <-fast.ch; ok {
		t.Fatal("close left a subscriber open")
	}
	if _, ok := h.subscribe(); ok {
		t.Fatal("subscribe after close")
	}
	h.unsubscribe(fast) // safe after close
}

// drain empties ch and returns it (a closed channel reads !ok at once).
func drain(ch chan []byte) chan []byte {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return ch
			}
		default:
			return ch
		}
	}
}

func TestBoundaryOf(t *testing.T) {
	if r := boundaryOf("not-a-cell"); r != nil {
		t.Errorf("boundary of garbage: %v", r)
	}
	r := boundaryOf("89283082803ffff")
	if len(r) != 7 || r[0] != r[6] {
		t.Errorf("ring %v", r)
	}
}
