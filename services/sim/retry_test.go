package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// fakeClock is the retry policy's clock: sleeping advances it at once.
type fakeClock struct {
	t     time.Time
	slept []time.Duration
}

func (c *fakeClock) policy(budget time.Duration) retryPolicy {
	return retryPolicy{
		budget:      budget,
		callTimeout: 5 * time.Second,
		base:        250 * time.Millisecond,
		maxWait:     5 * time.Second,
		now:         func() time.Time { return c.t },
		sleep: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			c.slept = append(c.slept, d)
			c.t = c.t.Add(d)
			return nil
		},
		jitter: func(d time.Duration) time.Duration { return d }, // the upper bound
	}
}

func withRetryInfo(c codes.Code, delay time.Duration) error {
	st, err := status.New(c, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestRetryableCode(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"ok", live, nil, false},
		{"plain error", live, errors.New("plain"), false},
		{"unavailable", live, status.Error(codes.Unavailable, "draining"), true},
		{"deadline", live, status.Error(codes.DeadlineExceeded, "slow"), true},
		{"aborted", live, status.Error(codes.Aborted, "conflict"), true},
		{"canceled by the transport while we wait", live, status.Error(codes.Canceled, "stream reset"), true},
		{"canceled because we stopped", ended, status.Error(codes.Canceled, "context canceled"), false},
		{"our own context", live, context.Canceled, false},
		{"unavailable after we stopped", ended, status.Error(codes.Unavailable, "down"), false},
		{"refused: rate limit or shedding", live, status.Error(codes.ResourceExhausted, "slow down"), false},
		{"refused with a retry delay", live, withRetryInfo(codes.ResourceExhausted, time.Second), false},
		{"precondition", live, status.Error(codes.FailedPrecondition, "cancelled"), false},
		{"invalid", live, status.Error(codes.InvalidArgument, "bad"), false},
		{"unauthenticated", live, status.Error(codes.Unauthenticated, "who"), false},
		{"internal is a definite failure", live, status.Error(codes.Internal, "bug"), false},
	}
	for _, tt := range tests {
		if got := retryableCode(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: retryableCode(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestRetry(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "draining")
	s := time.Second
	ms := time.Millisecond
	tests := []struct {
		name      string
		budget    time.Duration
		errs      []error // what successive calls return; then nil
		wantCalls int
		wantErr   codes.Code
		wantSlept []time.Duration
	}{
		{"first call succeeds", time.Minute, nil, 1, codes.OK, nil},
		{"retries a draining instance, backing off", time.Minute, []error{unavailable, unavailable, unavailable}, 4, codes.OK,
			[]time.Duration{250 * ms, 500 * ms, s}},
		{"retries aborted", time.Minute, []error{status.Error(codes.Aborted, "conflict")}, 2, codes.OK, []time.Duration{250 * ms}},
		{"retries deadline exceeded", time.Minute, []error{status.Error(codes.DeadlineExceeded, "slow")}, 2, codes.OK, []time.Duration{250 * ms}},
		{"retries a transport cancel", time.Minute, []error{status.Error(codes.Canceled, "reset")}, 2, codes.OK, []time.Duration{250 * ms}},
		{"each wait is capped", time.Minute, []error{unavailable, unavailable, unavailable, unavailable, unavailable, unavailable, unavailable}, 8, codes.OK,
			[]time.Duration{250 * ms, 500 * ms, s, 2 * s, 4 * s, 5 * s, 5 * s}},
		{"honours RetryInfo", time.Minute, []error{withRetryInfo(codes.Unavailable, 1500*ms), withRetryInfo(codes.Unavailable, 3*ms)}, 3, codes.OK,
			[]time.Duration{1500 * ms, 3 * ms}},
		{"caps a long RetryInfo", time.Minute, []error{withRetryInfo(codes.Unavailable, time.Hour)}, 2, codes.OK, []time.Duration{5 * s}},
		// 250+500+1000+2000 ms = 3.75 s; the next wait (4 s) would pass 5 s.
		{"gives up when the budget is spent", 5 * s, []error{unavailable, unavailable, unavailable, unavailable, unavailable, unavailable}, 5, codes.Unavailable,
			[]time.Duration{250 * ms, 500 * ms, s, 2 * s}},
		{"outlasts a 20 s outage within the default budget", DefaultRetryBudget, repeat(unavailable, 8), 9, codes.OK,
			[]time.Duration{250 * ms, 500 * ms, s, 2 * s, 4 * s, 5 * s, 5 * s, 5 * s}},
		{"does not retry a refusal", time.Minute, []error{status.Error(codes.ResourceExhausted, "rate limited")}, 1, codes.ResourceExhausted, nil},
		{"does not retry invalid", time.Minute, []error{status.Error(codes.InvalidArgument, "bad")}, 1, codes.InvalidArgument, nil},
		{"does not retry a precondition", time.Minute, []error{status.Error(codes.FailedPrecondition, "ended"), unavailable}, 1, codes.FailedPrecondition, nil},
		{"does not retry internal", time.Minute, []error{status.Error(codes.Internal, "bug")}, 1, codes.Internal, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			p := clock.policy(tt.budget)
			var seen []codes.Code
			p.observe = func(err error) { seen = append(seen, status.Code(err)) }
			calls := 0
			out, err := retry(context.Background(), p, func(ctx context.Context) (int, error) {
				if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > p.callTimeout {
					t.Errorf("call deadline %v (set %v), want within %v", dl, ok, p.callTimeout)
				}
				calls++
				if calls <= len(tt.errs) {
					return 0, tt.errs[calls-1]
				}
				return 42, nil
			})
			if calls != tt.wantCalls || status.Code(err) != tt.wantErr {
				t.Fatalf("%d calls, err %v; want %d calls, %v", calls, err, tt.wantCalls, tt.wantErr)
			}
			if err == nil && out != 42 {
				t.Errorf("out = %d, want 42", out)
			}
			if len(clock.slept) != len(tt.wantSlept) {
				t.Fatalf("slept %v, want %v", clock.slept, tt.wantSlept)
			}
			for i := range clock.slept {
				if clock.slept[i] != tt.wantSlept[i] {
					t.Fatalf("slept %v, want %v", clock.slept, tt.wantSlept)
				}
			}
			if len(seen) != calls {
				t.Errorf("observed %v for %d calls", seen, calls)
			}
		})
	}
	t.Run("a ride in progress retries a shed call after its delay", func(t *testing.T) {
		for _, tt := range []struct {
			name      string
			err       error
			inflight  bool
			wantCalls int
			wantSlept []time.Duration
		}{
			{"shed, in progress", withRetryInfo(codes.ResourceExhausted, 700*time.Millisecond), true, 2, []time.Duration{700 * time.Millisecond}},
			{"shed, new request", withRetryInfo(codes.ResourceExhausted, 700*time.Millisecond), false, 1, nil},
			{"exhausted without a delay, in progress", status.Error(codes.ResourceExhausted, "quota"), true, 1, nil},
		} {
			clock := &fakeClock{t: time.Now()}
			p := clock.policy(time.Minute)
			if tt.inflight {
				p = p.inProgress()
			}
			calls := 0
			_, _ = retry(context.Background(), p, func(context.Context) (int, error) {
				calls++
				if calls == 1 {
					return 0, tt.err
				}
				return 1, nil
			})
			if calls != tt.wantCalls || len(clock.slept) != len(tt.wantSlept) || (len(tt.wantSlept) > 0 && clock.slept[0] != tt.wantSlept[0]) {
				t.Errorf("%s: %d calls, slept %v; want %d, %v", tt.name, calls, clock.slept, tt.wantCalls, tt.wantSlept)
			}
		}
	})
	t.Run("stops when the context ends", func(t *testing.T) {
		clock := &fakeClock{t: time.Now()}
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		_, err := retry(ctx, clock.policy(time.Minute), func(context.Context) (int, error) {
			calls++
			cancel()
			return 0, unavailable
		})
		if calls != 1 || status.Code(err) != codes.Unavailable {
			t.Errorf("%d calls, err %v; want 1 call, Unavailable", calls, err)
		}
	})
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// The jitter stays within [d/2, d] and the real policy's defaults are the
// documented ones.
func TestRetryPolicyDefaults(t *testing.T) {
	p := newRetryPolicy(Config{}, nil)
	if p.budget != DefaultRetryBudget || p.maxWait != 5*time.Second {
		t.Errorf("budget %v, max wait %v", p.budget, p.maxWait)
	}
	if q := newRetryPolicy(Config{RetryBudget: time.Second}, nil); q.budget != time.Second {
		t.Errorf("budget %v, want 1s", q.budget)
	}
	for range 1000 {
		if j := p.jitter(time.Second); j < 500*time.Millisecond || j > time.Second {
			t.Fatalf("jitter(1s) = %v", j)
		}
	}
}

// quoteRefuser answers GetQuote and RequestRide with what it is given.
type quoteRefuser struct {
	riderv1.RiderServiceClient
	quoteErr, requestErr error
	requests             int
}

func (q *quoteRefuser) GetQuote(context.Context, *riderv1.GetQuoteRequest, ...grpc.CallOption) (*riderv1.GetQuoteResponse, error) {
	if q.quoteErr != nil {
		return nil, q.quoteErr
	}
	return &riderv1.GetQuoteResponse{Quote: &riderv1.Quote{QuoteId: "q1"}}, nil
}

func (q *quoteRefuser) RequestRide(context.Context, *riderv1.RequestRideRequest, ...grpc.CallOption) (*riderv1.RequestRideResponse, error) {
	q.requests++
	return nil, q.requestErr
}

// A refusal (ResourceExhausted) on either call ends the ride at once as
// refused, not as an error; Internal is an error; both are counted by code.
func TestRideRefused(t *testing.T) {
	exhausted := withRetryInfo(codes.ResourceExhausted, time.Second)
	tests := []struct {
		name                    string
		quoteErr, requestErr    error
		wantRefused, wantErrors int
		wantRequests            int
		wantCode                string
	}{
		{"quote refused", exhausted, nil, 1, 0, 0, "ResourceExhausted"},
		{"request refused", nil, exhausted, 1, 0, 1, "ResourceExhausted"},
		{"request failed inside", nil, status.Error(codes.Internal, "bug"), 0, 1, 1, "Internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := &quoteRefuser{quoteErr: tt.quoteErr, requestErr: tt.requestErr}
			r := &ride{riderID: "r1", cfg: validConfig(), client: stub, rec: newRecorder()}
			r.run(context.Background(), "k1")
			s := r.rec.snapshot()
			if s.Refused != tt.wantRefused || s.Errors != tt.wantErrors || stub.requests != tt.wantRequests {
				t.Errorf("refused %d errors %d requests %d; want %d, %d, %d", s.Refused, s.Errors, stub.requests, tt.wantRefused, tt.wantErrors, tt.wantRequests)
			}
			if s.Codes[tt.wantCode] != 1 || s.Requests != 0 || s.InFlight != 0 {
				t.Errorf("codes %v, requests %d, in flight %d", s.Codes, s.Requests, s.InFlight)
			}
			if tt.wantRefused > 0 && s.RefusedP99MS > 1000 {
				t.Errorf("refusal answer time %v ms: it is the refusing attempt's, not a retry delay", s.RefusedP99MS)
			}
		})
	}
}
