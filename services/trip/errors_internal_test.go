package trip

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStoreTimeoutWhileCallerWaits: a timeout or cancellation the caller
// did not cause (the store's connect timeout, a dropped connection) is the
// store being unavailable; only the caller's own deadline is
// DeadlineExceeded.
func TestStoreTimeoutWhileCallerWaits(t *testing.T) {
	alive := context.Background()
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-expired.Done()
	storeTimeout := fmt.Errorf("sqlstore: get: failed to connect: %w", context.DeadlineExceeded)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{"store's own timeout, caller waiting", alive, storeTimeout, codes.Unavailable},
		{"caller's deadline passed", expired, storeTimeout, codes.DeadlineExceeded},
		{"internal cancel, caller waiting", alive, fmt.Errorf("begin: %w", context.Canceled), codes.Unavailable},
		{"no context known", nil, storeTimeout, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toStatus(tc.ctx, tc.err, nil)
			if status.Code(got) != tc.want {
				t.Fatalf("toStatus = %v, want %s", got, tc.want)
			}
		})
	}
}
