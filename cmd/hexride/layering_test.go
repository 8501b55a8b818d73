package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/hexride/hexride/"

// pkgInfo is what the layering rules look at: a package's direct imports
// and its whole dependency closure (both from go list).
type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// forbiddenDeps are libraries only the trip store may link: a client or
// another service that pulls them in has linked a server.
var forbiddenDeps = []string{"github.com/jackc/pgx/", "github.com/cockroachdb/cockroach-go/"}

// layers are the top-level folders of the design card (tools and
// third_party hold separate modules and vendored protos).
var layers = []string{"cmd", "services", "dispatch", "roads", "geo", "infra", "proto"}

// serviceOf returns the service a package belongs to ("trip" for
// services/trip/store), or "".
func serviceOf(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module+"services/")
	if !ok {
		return ""
	}
	svc, _, _ := strings.Cut(rest, "/")
	return svc
}

// isClient reports whether pkg is a service's client package
// (services/<svc>/<svc>client).
func isClient(pkg string) bool {
	svc := serviceOf(pkg)
	return svc != "" && pkg == module+"services/"+svc+"/"+svc+"client"
}

// sharedWithClients reports whether a package of service svc may be
// imported by svc's own client: the API vocabulary both sides share
// (<svc>api, the matching ring) and the pure state machine behind it.
func sharedWithClients(pkg, svc string) bool {
	base := module + "services/" + svc + "/"
	return pkg == base+svc+"api" || pkg == base+"ring" || pkg == base+"lifecycle"
}

// layeringViolations checks the dependency rules of the design card:
//
//	cmd → services → {dispatch, geo, infra, proto};  dispatch → geo
//	geo and dispatch import nothing from services or infra
//	infra and proto import nothing from services, dispatch or cmd
//	a service imports another service only through <svc>client
//	  (services/node, the composition root, assembles servers)
//	a client imports no server: only its service's shared API packages,
//	  and links no database driver
func layeringViolations(pkgs []pkgInfo) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, p := range pkgs {
		from := strings.TrimPrefix(p.ImportPath, module)
		if !strings.HasPrefix(p.ImportPath, module) {
			continue
		}
		layer, _, _ := strings.Cut(from, "/")
		if !slices.Contains(layers, layer) {
			bad("%s: %s is not a layer of the design card (%s)", from, layer, strings.Join(layers, ", "))
		}
		for _, imp := range p.Imports {
			to, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			toLayer, _, _ := strings.Cut(to, "/")
			switch layer {
			case "cmd":
			case "roads":
				if toLayer != "geo" && toLayer != "roads" {
					bad("%s imports %s: roads imports only geo", from, to)
				}
			case "geo":
				bad("%s imports %s: geo imports no hexride package", from, to)
			case "dispatch":
				if toLayer != "geo" && toLayer != "dispatch" {
					bad("%s imports %s: dispatch imports only geo", from, to)
				}
			case "infra", "proto":
				if toLayer != layer && !(layer == "infra" && toLayer == "proto") {
					bad("%s imports %s: %s imports only itself (infra may import proto)", from, to, layer)
				}
			case "services":
				if toLayer == "cmd" {
					bad("%s imports %s: services never import cmd", from, to)
				}
			}
			if layer != "services" || toLayer != "services" {
				continue
			}
			fromSvc, toSvc := serviceOf(p.ImportPath), serviceOf(imp)
			switch {
			case fromSvc == "node":
				// The composition root may assemble any server.
			case toSvc == "node":
				bad("%s imports %s: only cmd assembles nodes", from, to)
			case isClient(p.ImportPath) && toSvc == fromSvc && !sharedWithClients(imp, toSvc):
				bad("%s imports %s: a client imports only its service's shared API packages, never the server", from, to)
			case toSvc != fromSvc && !isClient(imp):
				bad("%s imports %s: %s reaches %s only through %sclient", from, to, fromSvc, toSvc, toSvc)
			}
		}
		if isClient(p.ImportPath) {
			// Not even through its shared packages may a client reach a
			// server: its own service's or another's.
			svc := serviceOf(p.ImportPath)
			for _, dep := range p.Deps {
				depSvc := serviceOf(dep)
				switch {
				case depSvc == "":
				case depSvc == svc && !sharedWithClients(dep, svc) && dep != p.ImportPath:
					bad("%s links %s: a client never links its server", from, strings.TrimPrefix(dep, module))
				case depSvc != svc && !isClient(dep) && !sharedWithClients(dep, depSvc):
					bad("%s links %s: a client links other services only through their clients", from, strings.TrimPrefix(dep, module))
				}
			}
		}
		if isClient(p.ImportPath) || (serviceOf(p.ImportPath) != "" && serviceOf(p.ImportPath) != "trip" && serviceOf(p.ImportPath) != "node") || layer == "geo" || layer == "dispatch" {
			for _, dep := range p.Deps {
				for _, f := range forbiddenDeps {
					if strings.HasPrefix(dep, f) {
						bad("%s links %s: only the trip store may use a database driver", from, dep)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// listPackages runs go list over the module (tests excluded: test files
// may wire servers together).
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps", "github.com/hexride/hexride/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkgInfo
	for {
		var p pkgInfo
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// TestLayering checks the real tree against the dependency rules.
func TestLayering(t *testing.T) {
	for _, v := range layeringViolations(listPackages(t)) {
		t.Error(v)
	}
}

// TestLayeringRules shows each rule catching the import it forbids.
func TestLayeringRules(t *testing.T) {
	pkg := func(path string, imports ...string) pkgInfo {
		info := pkgInfo{ImportPath: module + path}
		for _, imp := range imports {
			if !strings.Contains(imp, ".") {
				imp = module + imp
			}
			info.Imports = append(info.Imports, imp)
			info.Deps = append(info.Deps, imp)
		}
		return info
	}
	pkgDeps := func(path string, imports []string, deps ...string) pkgInfo {
		info := pkg(path, imports...)
		info.Deps = nil
		for _, d := range deps {
			info.Deps = append(info.Deps, module+d)
		}
		return info
	}
	for _, tc := range []struct {
		name string
		pkg  pkgInfo
		want string // "" when allowed
	}{
		{"service through a client", pkg("services/rider", "services/trip/tripclient", "dispatch", "geo", "infra/auth"), ""},
		{"client on its shared API", pkg("services/trip/tripclient", "services/trip/tripapi", "proto/hexride/trip/v1"), ""},
		{"node assembles servers", pkg("services/node", "services/trip", "services/trip/store/sqlstore", "github.com/jackc/pgx/v5"), ""},
		{"trip store on pgx", pkg("services/trip/store/sqlstore", "github.com/jackc/pgx/v5", "infra/postgres"), ""},
		{"client imports its server", pkg("services/trip/tripclient", "services/trip"), "never the server"},
		{"client imports the store", pkg("services/trip/tripclient", "services/trip/store"), "never the server"},
		{"service imports another's server", pkg("services/matching", "services/trip"), "only through tripclient"},
		{"service imports another's api", pkg("services/rider", "services/matching/matchingapi"), "only through matchingclient"},
		{"service links pgx", pkg("services/rider", "github.com/jackc/pgx/v5"), "database driver"},
		{"dispatch imports infra", pkg("dispatch", "infra/telemetry"), "dispatch imports only geo"},
		{"geo imports dispatch", pkg("geo", "dispatch"), "geo imports no hexride package"},
		{"infra imports a service", pkg("infra/consul", "services/matching/ring"), "imports only itself"},
		{"service imports node", pkg("services/console", "services/node"), "only cmd assembles nodes"},
		{"service imports cmd", pkg("services/sim", "cmd/hexride"), "never import cmd"},
		{"client links its server through its api", pkgDeps("services/trip/tripclient", []string{"services/trip/tripapi"}, "services/trip/tripapi", "services/trip/store"), "never links its server"},
		{"client links another server", pkgDeps("services/driver/driverclient", nil, "services/matching"), "only through their clients"},
		{"roads imports dispatch", pkg("roads", "dispatch"), "roads imports only geo"},
		{"unknown layer", pkg("scratch/probe", "geo"), "not a layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := layeringViolations([]pkgInfo{tc.pkg})
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("violations %q, want none", got)
				}
				return
			}
			if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("violations %q, want one mentioning %q", got, tc.want)
			}
		})
	}
}
