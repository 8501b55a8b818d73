package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

func TestRecord(t *testing.T) {
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	traced := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	tests := []struct {
		name string
		ctx  context.Context
		ev   Event
		want map[string]string
		omit []string
	}{
		{
			name: "denial",
			ctx:  context.Background(),
			ev:   Event{Actor: "rider:r1", Action: "/hexride.trip.v1.TripService/AssignDriver", Outcome: OutcomeDenied, Reason: "role rider not allowed"},
			want: map[string]string{"actor": "rider:r1", "action": "/hexride.trip.v1.TripService/AssignDriver", "outcome": "denied", "reason": "role rider not allowed", "event_time": "2026-01-02T03:04:05Z", "msg": "audit"},
			omit: []string{"target", "trace_id", "level"},
		},
		{
			name: "dispatcher action with trace",
			ctx:  traced,
			ev:   Event{Actor: "dispatcher:d1", Action: "trip.cancel", Target: "trip-9", Outcome: OutcomeSucceeded, Time: fixed.Add(time.Hour)},
			want: map[string]string{"target": "trip-9", "trace_id": tid.String(), "event_time": "2026-01-02T04:04:05Z", "outcome": "succeeded"},
			omit: []string{"reason"},
		},
		{
			name: "control characters and long fields are neutralised",
			ctx:  context.Background(),
			ev:   Event{Actor: "rider:x\n{\"forged\":1}", Action: strings.Repeat("a", 1000), Outcome: OutcomeDenied},
			want: map[string]string{"actor": "rider:x?{\"forged\":1}", "action": strings.Repeat("a", maxField) + "…"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf, WithClock(func() time.Time { return fixed }))
			l.Record(tt.ctx, tt.ev)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line, got %d: %q", len(lines), buf.String())
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, lines[0])
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %q", k, got[k], v)
				}
			}
			for _, k := range tt.omit {
				if _, ok := got[k]; ok {
					t.Errorf("%s present, want omitted: %v", k, got[k])
				}
			}
		})
	}
}

func TestNilAndDiscard(t *testing.T) {
	var l *Logger
	l.Record(context.Background(), Event{Actor: "a"}) // must not panic
	Discard().Record(context.Background(), Event{Actor: "a"})
	var r Recorder = Discard()
	r.Record(nil, Event{}) //nolint:staticcheck // nil ctx tolerated on purpose
}

func TestConcurrentRecordsStayWholeLines(t *testing.T) {
	var buf lockedBuffer
	l := New(&buf)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				l.Record(context.Background(), Event{Actor: "service:s", Action: "x", Outcome: OutcomeDenied, Reason: strings.Repeat("r", i*10)})
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 400 {
		t.Fatalf("lines = %d, want 400", len(lines))
	}
	for _, ln := range lines {
		if !json.Valid([]byte(ln)) {
			t.Fatalf("interleaved line: %q", ln)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
