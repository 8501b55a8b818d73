package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzJWTVerify: Verify never panics, and whatever it accepts carries a
// valid signature by a key of the set over its exact header.payload, with
// a known role and a subject.
func FuzzJWTVerify(f *testing.F) {
	k := mustKeys(f)
	good, _ := Mint(k.ed, k.edKid, testIss, testAud, RoleRider, "r-1", time.Hour, testNow)
	rsaTok, _ := Mint(k.rsa, k.rsaKid, testIss, testAud, RoleService, "trip", time.Hour, testNow)
	f.Add(good)
	f.Add(rsaTok)
	f.Add(sign(f, jwt.SigningMethodEdDSA, k.other, k.edKid, baseClaims()))
	f.Add(sign(f, jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey)), k.edKid, baseClaims()))
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIiwia2lkIjoiZWQtMSJ9.e30.")
	f.Add("..")
	a := newTestAuthenticator(f, JWTConfig{Leeway: time.Minute})
	f.Fuzz(func(t *testing.T, token string) {
		p, err := a.Verify(token)
		if err != nil {
			return
		}
		if !validRole(p.Role) || p.Subject == "" {
			t.Fatalf("accepted principal %v", p)
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token with %d parts", len(parts))
		}
		hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err != nil {
			t.Fatalf("accepted undecodable header: %v", err)
		}
		var hdr struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
			t.Fatalf("accepted bad header: %v", err)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			t.Fatalf("accepted undecodable signature: %v", err)
		}
		input := []byte(parts[0] + "." + parts[1])
		key, alg, ok := k.set.Lookup(hdr.Kid)
		if !ok || alg != hdr.Alg {
			t.Fatalf("accepted kid %q alg %q", hdr.Kid, hdr.Alg)
		}
		switch pub := key.(type) {
		case ed25519.PublicKey:
			if !ed25519.Verify(pub, input, sig) {
				t.Fatal("accepted a token not signed by the Ed25519 key")
			}
		case *rsa.PublicKey:
			sum := sha256.Sum256(input)
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
				t.Fatal("accepted a token not signed by the RSA key")
			}
		default:
			t.Fatalf("key of type %T", key)
		}
	})
}

// FuzzPolicyLookup: the authorizer never panics, allows only what the
// table lists for the role, and denies everything else with
// PermissionDenied (health aside; reflection is for every known role).
func FuzzPolicyLookup(f *testing.F) {
	for m := range DefaultPolicies() {
		f.Add(m, "rider")
	}
	f.Add("/hexride.trip.v1.TripService/AssignDriver", "service")
	f.Add("/grpc.health.v1.Health/Check", "rider")
	f.Add("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "driver")
	f.Add("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "nobody")
	f.Add("/hexride.trip.v1.TripService/AssignDriver/", "service")
	f.Add("", "")
	f.Add("//", "dispatcher")
	authz, err := NewAuthorizer(AuthorizerConfig{})
	if err != nil {
		f.Fatal(err)
	}
	table := DefaultPolicies()
	f.Fuzz(func(t *testing.T, method, role string) {
		ctx := WithPrincipal(context.Background(), Principal{Role: Role(role), Subject: "s"})
		_, err := authz.Authorize(ctx, method)
		if exempt(method) {
			if err != nil {
				t.Fatalf("exempt %q refused: %v", method, err)
			}
			return
		}
		pol, listed := table[method]
		want := listed && slices.Contains(pol.Roles, Role(role))
		if IsReflection(method) {
			want = validRole(Role(role))
		}
		if (err == nil) != want {
			t.Fatalf("%q by %q: err=%v, want allowed=%v", method, role, err, want)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%q by %q: code %v", method, role, status.Code(err))
		}
	})
}

// FuzzParseJWKS: parsing never panics and every key it keeps is usable.
func FuzzParseJWKS(f *testing.F) {
	k := mustKeys(f)
	f.Add(k.jwks)
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseJWKS(data)
		if err != nil {
			return
		}
		for kid, key := range set.keys {
			switch pub := key.key.(type) {
			case ed25519.PublicKey:
				if len(pub) != ed25519.PublicKeySize || key.alg != AlgEdDSA {
					t.Fatalf("kid %q: bad Ed25519 key", kid)
				}
			case *rsa.PublicKey:
				if pub.N.BitLen() < minRSABits || key.alg != AlgRS256 {
					t.Fatalf("kid %q: bad RSA key", kid)
				}
			default:
				t.Fatalf("kid %q: %T", kid, key.key)
			}
		}
	})
}
