package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/hexride/hexride/infra/audit"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// hexrideMethods lists every RPC of every service registered under
// proto/hexride (the imports above register them).
func hexrideMethods(t *testing.T) []string {
	t.Helper()
	var out []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "hexride.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	// Cross-check with the generated ServiceDescs, which the server uses.
	var fromDescs []string
	for _, d := range []grpc.ServiceDesc{riderv1.RiderService_ServiceDesc, driverv1.DriverService_ServiceDesc, driverv1.DriverGatewayService_ServiceDesc, matchingv1.MatchingService_ServiceDesc, tripv1.TripService_ServiceDesc} {
		for _, m := range d.Methods {
			fromDescs = append(fromDescs, "/"+d.ServiceName+"/"+m.MethodName)
		}
		for _, s := range d.Streams {
			fromDescs = append(fromDescs, "/"+d.ServiceName+"/"+s.StreamName)
		}
	}
	slices.Sort(out)
	slices.Sort(fromDescs)
	if !slices.Equal(out, fromDescs) {
		t.Fatalf("registry methods %v\n!= ServiceDesc methods %v (a new service? add its ServiceDesc here)", out, fromDescs)
	}
	if len(out) < 30 {
		t.Fatalf("only %d methods found; are the proto packages imported?", len(out))
	}
	return out
}

func TestDefaultPoliciesCoverEveryMethod(t *testing.T) {
	table := DefaultPolicies()
	if err := table.Validate(); err != nil {
		t.Fatal(err)
	}
	methods := hexrideMethods(t)
	for _, m := range methods {
		if _, ok := table.Lookup(m); !ok {
			t.Errorf("%s has no policy (it would be denied to everyone)", m)
		}
	}
	for m := range table {
		if !slices.Contains(methods, m) {
			t.Errorf("policy for %s, which no service defines (stale entry)", m)
		}
	}
}

func TestDefaultPolicyDecisions(t *testing.T) {
	allRoles := []Role{RoleRider, RoleDriver, RoleDispatcher, RoleService}
	// The expected table, written independently of DefaultPolicies.
	want := map[string][]Role{}
	for _, m := range []string{"GetQuote", "RequestRide", "CancelRide", "GetTrip", "ListTrips", "WatchTrip", "RateTrip"} {
		want["/hexride.rider.v1.RiderService/"+m] = []Role{RoleRider}
	}
	for _, m := range []string{"Connect", "ArriveAtPickup", "StartTrip", "CompleteTrip", "CancelTrip"} {
		want["/hexride.driver.v1.DriverService/"+m] = []Role{RoleDriver}
	}
	console := []Role{RoleService, RoleDispatcher}
	want["/hexride.driver.v1.DriverGatewayService/PushToDriver"] = []Role{RoleService}
	want["/hexride.driver.v1.DriverGatewayService/WatchPosition"] = []Role{RoleService}
	want["/hexride.driver.v1.DriverGatewayService/TakeOffline"] = console
	want["/hexride.driver.v1.DriverGatewayService/ListFlaggedDrivers"] = console
	for _, m := range []string{"IngestLocations", "CancelDispatch", "ReplyOffer", "ShareSurge"} {
		want["/hexride.matching.v1.MatchingService/"+m] = []Role{RoleService}
	}
	for _, m := range []string{"Partitions", "ListDrivers", "CellStats", "NearbyDrivers", "Dispatch"} {
		want["/hexride.matching.v1.MatchingService/"+m] = console
	}
	for _, m := range []string{"CreateTrip", "AssignDriver", "RateTrip"} {
		want["/hexride.trip.v1.TripService/"+m] = []Role{RoleService}
	}
	for _, m := range []string{"Transition", "ListTrips", "GetTrip", "GetTripEvents", "WatchTrips"} {
		want["/hexride.trip.v1.TripService/"+m] = console
	}
	authz, err := NewAuthorizer(AuthorizerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range hexrideMethods(t) {
		for _, r := range allRoles {
			ctx := WithPrincipal(context.Background(), Principal{Role: r, Subject: "x"})
			_, err := authz.Authorize(ctx, m)
			allowed := err == nil
			if allowed != slices.Contains(want[m], r) {
				t.Errorf("%s by %s: allowed=%v, want %v", m, r, allowed, !allowed)
			}
			if err != nil && status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s by %s: code %v, want PermissionDenied", m, r, status.Code(err))
			}
		}
	}
}

func TestAuthorizerDecisionsAndAudit(t *testing.T) {
	k := mustKeys(t)
	tok, _ := Mint(k.ed, k.edKid, testIss, testAud, RoleRider, "r-1", 3600e9, testNow)
	jwtAuth := newTestAuthenticator(t, JWTConfig{})
	combined, err := NewCombinedAuthenticator(CombinedConfig{Bearer: jwtAuth})
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	}
	expired, _ := Mint(k.ed, k.edKid, testIss, testAud, RoleRider, "r-1", 60e9, testNow.Add(-3600e9))
	tests := []struct {
		name      string
		ctx       context.Context
		method    string
		want      codes.Code
		outcome   audit.Outcome // "" when nothing is audited
		actor     string
		principal Principal
	}{
		{"rider on rider API", bearer(tok), "/hexride.rider.v1.RiderService/RequestRide", codes.OK, "", "", Principal{RoleRider, "r-1"}},
		{"rider on trip internals", bearer(tok), "/hexride.trip.v1.TripService/AssignDriver", codes.PermissionDenied, audit.OutcomeDenied, "rider:r-1", Principal{}},
		{"unknown method denied", bearer(tok), "/hexride.rider.v1.RiderService/AdminDeleteEverything", codes.PermissionDenied, audit.OutcomeDenied, "rider:r-1", Principal{}},
		{"unknown service denied", bearer(tok), "/evil.v1.Backdoor/Open", codes.PermissionDenied, audit.OutcomeDenied, "rider:r-1", Principal{}},
		{"no credentials", context.Background(), "/hexride.rider.v1.RiderService/GetQuote", codes.Unauthenticated, audit.OutcomeUnauthenticated, "anonymous", Principal{}},
		{"expired token", bearer(expired), "/hexride.rider.v1.RiderService/GetQuote", codes.Unauthenticated, audit.OutcomeUnauthenticated, "anonymous", Principal{}},
		{"dev header not trusted", metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-hexride-principal", "service:x")), "/hexride.trip.v1.TripService/CreateTrip", codes.Unauthenticated, audit.OutcomeUnauthenticated, "anonymous", Principal{}},
		{"health is exempt", context.Background(), "/grpc.health.v1.Health/Check", codes.OK, "", "", Principal{}},
		{"reflection needs credentials", context.Background(), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.Unauthenticated, audit.OutcomeUnauthenticated, "anonymous", Principal{}},
		{"reflection (v1alpha) needs credentials", context.Background(), "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", codes.Unauthenticated, audit.OutcomeUnauthenticated, "anonymous", Principal{}},
		{"reflection for any authenticated role", bearer(tok), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK, "", "", Principal{RoleRider, "r-1"}},
		{"reflection for a principal set upstream", WithPrincipal(context.Background(), Principal{RoleDispatcher, "ops"}), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK, "", "", Principal{RoleDispatcher, "ops"}},
		{"reflection-looking path is not reflection", bearer(tok), "/grpc.reflection.v1.ServerReflection/../hexride.trip.v1.TripService/AssignDriver", codes.PermissionDenied, audit.OutcomeDenied, "rider:r-1", Principal{}},
		{"principal set upstream is used", WithPrincipal(context.Background(), Principal{RoleService, "trip"}), "/hexride.trip.v1.TripService/CreateTrip", codes.OK, "", "", Principal{RoleService, "trip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var auditBuf, logBuf bytes.Buffer
			authz, err := NewAuthorizer(AuthorizerConfig{
				Authenticator: combined,
				Logger:        slog.New(slog.NewJSONHandler(&logBuf, nil)),
				Audit:         audit.New(&auditBuf),
			})
			if err != nil {
				t.Fatal(err)
			}
			var got Principal
			handler := func(ctx context.Context, _ any) (any, error) {
				got, _ = FromContext(ctx)
				return "ok", nil
			}
			_, err = authz.UnaryServerInterceptor()(tt.ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if c := status.Code(err); c != tt.want {
				t.Fatalf("code %v, want %v (%v)", c, tt.want, err)
			}
			if got != tt.principal {
				t.Fatalf("handler saw %v, want %v", got, tt.principal)
			}
			for _, out := range []string{auditBuf.String(), logBuf.String(), errString(err)} {
				assertNoTokenLeak(t, out, tok)
				assertNoTokenLeak(t, out, expired)
			}
			if tt.outcome == "" {
				if auditBuf.Len() != 0 {
					t.Fatalf("audited an allowed call: %s", auditBuf.String())
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal(auditBuf.Bytes(), &rec); err != nil {
				t.Fatalf("audit record: %v: %q", err, auditBuf.String())
			}
			if rec["actor"] != tt.actor || rec["action"] != tt.method || rec["outcome"] != string(tt.outcome) {
				t.Fatalf("audit record %v, want actor %s action %s outcome %s", rec, tt.actor, tt.method, tt.outcome)
			}
			if !strings.Contains(logBuf.String(), "call refused") {
				t.Fatalf("denial not logged: %q", logBuf.String())
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestStreamAuthorizer(t *testing.T) {
	authz, err := NewAuthorizer(AuthorizerConfig{Authenticator: HeaderAuthenticator{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-hexride-principal", "driver:d-9"))
	var got Principal
	h := func(_ any, ss grpc.ServerStream) error {
		got, _ = FromContext(ss.Context())
		return nil
	}
	if err := authz.StreamServerInterceptor()(nil, &testStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/hexride.driver.v1.DriverService/Connect"}, h); err != nil {
		t.Fatal(err)
	}
	if got != (Principal{RoleDriver, "d-9"}) {
		t.Fatalf("stream saw %v", got)
	}
	err = authz.StreamServerInterceptor()(nil, &testStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/hexride.matching.v1.MatchingService/IngestLocations"}, h)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("driver on IngestLocations: %v", err)
	}
	// Without an authenticator, a principal must already be there.
	bare, _ := NewAuthorizer(AuthorizerConfig{})
	err = bare.StreamServerInterceptor()(nil, &testStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/hexride.driver.v1.DriverService/Connect"}, h)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no principal: %v", err)
	}
}

type testStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *testStream) Context() context.Context { return s.ctx }

func TestPolicyTableValidate(t *testing.T) {
	tests := []struct {
		name  string
		table PolicyTable
		ok    bool
	}{
		{"default", DefaultPolicies(), true},
		{"not a method", PolicyTable{"RequestRide": Allow(RoleRider)}, false},
		{"no package", PolicyTable{"/Svc/M": Allow(RoleRider)}, false},
		{"no role", PolicyTable{"/a.S/M": Allow()}, false},
		{"unknown role", PolicyTable{"/a.S/M": Allow("admin")}, false},
		{"extra slash", PolicyTable{"/a.S/M/x": Allow(RoleRider)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.table.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("err %v is not ErrBadPolicy", err)
			}
			if _, err := NewAuthorizer(AuthorizerConfig{Policies: tt.table}); (err == nil) != tt.ok {
				t.Fatalf("NewAuthorizer = %v", err)
			}
		})
	}
}
