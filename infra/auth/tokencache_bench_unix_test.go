//go:build unix

package auth_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkUnaryOverSocket is the real path: unary calls with one bearer
// token over a loopback socket to a server with the Authorizer, with the
// verified-token cache on and off, in the same run. cpu-µs/op is the
// process's CPU time (user + system) per call: client and server share the
// process, so the difference between the two is the server's saving.
func BenchmarkUnaryOverSocket(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			clk := newTestClock()
			key, jwtAuth := cachedSetup(b, clk, bc.cacheSize)
			conn, err := grpc.NewClient(startCacheServer(b, jwtAuth), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { conn.Close() })
			ctx := auth.BearerContext(context.Background(), mintAt(b, key, auth.Principal{Role: auth.RoleService, Subject: "matching"}, time.Hour, clk.Now()))
			if _, code := caller(ctx, conn); code != codes.OK { // connect
				b.Fatal(code)
			}
			cpu0 := processCPU(b)
			for b.Loop() {
				if _, code := caller(ctx, conn); code != codes.OK {
					b.Fatal(code)
				}
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(jwtAuth.CacheStats().Verifications)/float64(b.N+1), "verifications/op")
		})
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
