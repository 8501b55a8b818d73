package sim

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/ratelimit"
)

// DefaultRetryBudget is how long an app keeps retrying one call through an
// outage before it gives up (Config.RetryBudget 0).
const DefaultRetryBudget = 2 * time.Minute

// retryPolicy is how an app retries a unary call, as a well-behaved mobile
// app does: a retryable answer (the platform was unavailable, slow, or a
// transaction conflicted) is retried with the same request, and so the same
// idempotency key, after an exponential backoff with jitter (or the delay
// the server asked for in its RetryInfo), until a definite answer or until
// the budget is spent. The clock, the sleep and the jitter are fields so
// that tests run on a fake clock.
type retryPolicy struct {
	budget      time.Duration // total time from the first attempt
	callTimeout time.Duration // each attempt's deadline
	base        time.Duration // first backoff
	maxWait     time.Duration // cap on one wait, server-asked delays included

	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration // a random duration in [d/2, d]
	// observe sees every attempt's answer (nil error: OK).
	observe func(err error)
	// shedRetry: a ResourceExhausted that carries a RetryInfo delay (the
	// server shed the call, nothing was done) is retried after the delay.
	// For work on a ride in progress (trip actions, cancels, reads): the app
	// cannot give that up. A new ride request does not set it: there the
	// refusal is the answer and the rider gives up.
	shedRetry bool
}

// inProgress is p for calls about a ride already under way.
func (p retryPolicy) inProgress() retryPolicy {
	p.shedRetry = true
	return p
}

// newRetryPolicy is the apps' policy for cfg, counting answers in rec.
func newRetryPolicy(cfg Config, rec *recorder) retryPolicy {
	budget := cfg.RetryBudget
	if budget == 0 {
		budget = DefaultRetryBudget
	}
	p := retryPolicy{
		budget:      budget,
		callTimeout: 5 * time.Second,
		base:        250 * time.Millisecond,
		maxWait:     5 * time.Second,
		now:         time.Now,
		sleep:       sleepCtx,
		jitter: func(d time.Duration) time.Duration {
			if d <= 1 {
				return d
			}
			return d/2 + rand.N(d/2+1)
		},
	}
	if rec != nil {
		p.observe = rec.code
	}
	return p
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryableCode reports whether an answer with err is worth asking again:
// the platform was unavailable (restarting, draining, database down), too
// slow for the attempt's deadline, or aborted a transaction; Canceled only
// while the caller's own ctx is alive (then something between the app and
// the platform cancelled it, not the app). Everything else is definite:
// the call did what it says or was refused before doing anything.
func retryableCode(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.Canceled:
		// A plain context.Canceled is the attempt's own context (ours) ending;
		// a status Canceled came from the transport or the server.
		_, isStatus := status.FromError(err)
		return isStatus && !errors.Is(err, context.Canceled)
	}
	return false
}

// shed reports whether err is the server refusing the call before any work
// and asking for a retry after a delay (ResourceExhausted with RetryInfo).
func shed(ctx context.Context, err error) bool {
	if ctx.Err() != nil || status.Code(err) != codes.ResourceExhausted {
		return false
	}
	_, ok := ratelimit.RetryDelay(err)
	return ok
}

// wait is how long to wait before retry number attempt (0: the first
// retry) after err: the server's RetryInfo delay if it sent one, else an
// exponential backoff with jitter; never more than maxWait.
func (p retryPolicy) wait(attempt int, err error) time.Duration {
	if d, ok := ratelimit.RetryDelay(err); ok && d > 0 {
		return min(d, p.maxWait)
	}
	d := p.maxWait
	if attempt < 30 {
		d = min(p.base<<attempt, p.maxWait)
	}
	return p.jitter(d)
}

// retry calls fn until it returns a definite answer, ctx ends, or the
// budget is spent; it returns the last answer. fn must send the same
// request every time (same idempotency key).
func retry[T any](ctx context.Context, p retryPolicy, fn func(context.Context) (T, error)) (T, error) {
	start := p.now()
	deadline := start.Add(p.budget)
	for attempt := 0; ; attempt++ {
		timeout := min(p.callTimeout, deadline.Sub(p.now()))
		if timeout <= 0 {
			timeout = p.callTimeout // the budget ran out while waiting: one last try
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		out, err := fn(cctx)
		cancel()
		if p.observe != nil && ctx.Err() == nil {
			p.observe(err)
		}
		if !retryableCode(ctx, err) && !(p.shedRetry && shed(ctx, err)) {
			return out, err
		}
		w := p.wait(attempt, err)
		if p.now().Add(w).After(deadline) {
			return out, err // the budget is spent
		}
		if p.sleep(ctx, w) != nil {
			return out, err
		}
	}
}
