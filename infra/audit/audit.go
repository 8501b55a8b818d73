// Package audit writes the security audit trail: who did what to which
// target, and whether it was allowed. Records are slog JSON lines on their
// own writer (a file, stderr, a log shipper's pipe), apart from the
// operational log, so they can be retained and access-controlled on their
// own terms.
//
// The authorization interceptor in infra/auth records every denial here; the
// services record dispatcher actions (cancel, redispatch, take offline).
// Records never carry credentials: callers pass identities and reasons, not
// tokens or request bodies.
package audit

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/trace"
)

// Outcome is how an audited action ended.
type Outcome string

// Outcomes.
const (
	// OutcomeAllowed: an authorization decision let the call through.
	OutcomeAllowed Outcome = "allowed"
	// OutcomeDenied: the caller was authenticated but not permitted.
	OutcomeDenied Outcome = "denied"
	// OutcomeUnauthenticated: the caller presented no valid credentials.
	OutcomeUnauthenticated Outcome = "unauthenticated"
	// OutcomeSucceeded and OutcomeFailed: a permitted action ran and
	// succeeded or failed (dispatcher actions).
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
)

// Event is one audit record.
type Event struct {
	// Actor is who acted, as "role:subject" (auth.Principal.String()), or
	// "anonymous" when unauthenticated.
	Actor string
	// Action is what was attempted: a gRPC full method or a named console
	// action ("trip.cancel").
	Action string
	// Target is what it was attempted on (a trip id, a driver id); may be
	// empty.
	Target  string
	Outcome Outcome
	// Reason explains the outcome in a few words. Never put credentials or
	// request bodies here.
	Reason string
	// Time defaults to the logger's clock.
	Time time.Time
}

// Recorder is what code that audits depends on; *Logger implements it.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// maxField bounds each string field so a hostile value cannot bloat the
// trail.
const maxField = 256

// Logger writes audit events as JSON lines.
type Logger struct {
	log *slog.Logger
	now func() time.Time
}

var _ Recorder = (*Logger)(nil)

// Option configures a Logger.
type Option func(*Logger)

// WithClock sets the clock that stamps events without a Time (tests).
func WithClock(now func() time.Time) Option { return func(l *Logger) { l.now = now } }

// New returns a Logger writing one JSON object per line to w. Writes to w
// are serialised by slog's JSON handler.
func New(w io.Writer, opts ...Option) *Logger {
	return NewWithHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			// The event time is the "time" field; drop slog's own level
			// and message, which carry nothing here.
			if len(groups) == 0 && (a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	}), opts...)
}

// NewWithHandler returns a Logger over any slog handler.
func NewWithHandler(h slog.Handler, opts ...Option) *Logger {
	l := &Logger{log: slog.New(h), now: time.Now}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Discard returns a Logger that writes nothing.
func Discard() *Logger { return New(io.Discard) }

// Record writes e. A nil *Logger records nothing, so optional auditing
// needs no checks at call sites.
func (l *Logger) Record(ctx context.Context, e Event) {
	if l == nil {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	t := e.Time
	if t.IsZero() {
		t = l.now()
	}
	attrs := []slog.Attr{
		slog.String("event_time", t.UTC().Format(time.RFC3339Nano)),
		slog.String("actor", clean(e.Actor)),
		slog.String("action", clean(e.Action)),
		slog.String("outcome", clean(string(e.Outcome))),
	}
	if e.Target != "" {
		attrs = append(attrs, slog.String("target", clean(e.Target)))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", clean(e.Reason)))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}

// clean truncates s and replaces control characters, so one field cannot
// forge extra lines or flood the trail.
func clean(s string) string {
	if len(s) > maxField {
		s = s[:maxField] + "…"
	}
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
