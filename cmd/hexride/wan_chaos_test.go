//go:build chaos

package main

// The three-region drill (issue 17): three network namespaces, each a
// region with its own Consul server as its own datacenter (WAN-federated
// over a bridge), a matching worker and a gateway (driver, rider and trip)
// per region, one PostgreSQL on the host. Rides run in every region; then
// one region's network is cut: the other two keep dispatching without a
// failed call, and the cut region's partitions go to its fallback, whose
// worker then dispatches the cut region's rides (its apps failed over to
// the fallback region's gateway).

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/sim"
)

const (
	wanBridge = "hxwanbr"
	wanHostIP = "10.232.0.1" // the host on the bridge: PostgreSQL's proxy
	wanPrefix = 24
)

// wanRegion is one region of the drill.
type wanRegion struct {
	name, ns, vethHost, vethNS, ip string
	city                           sim.BBox
	consul                         *consultest.Agent
	p                              *platform // host, consul and flags of the region
	worker, gateway                *proc
}

func (r *wanRegion) prefix() []string { return []string{"ip", "netns", "exec", r.ns} }

// wanCities: a small box in three cities, each in its own region.
var wanCities = []struct {
	name string
	box  sim.BBox
}{
	{"r1", sim.BBox{MinLat: 37.760, MinLng: -122.430, MaxLat: 37.785, MaxLng: -122.400}}, // San Francisco
	{"r2", sim.BBox{MinLat: 34.040, MinLng: -118.260, MaxLat: 34.065, MaxLng: -118.230}}, // Los Angeles
	{"r3", sim.BBox{MinLat: 47.595, MinLng: -122.345, MaxLat: 47.620, MaxLng: -122.315}}, // Seattle
}

// setupWANNetwork creates a bridge on the host and one namespace per
// region plugged into it; t.Cleanup removes them whatever happens.
func setupWANNetwork(t *testing.T, regions []*wanRegion) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("three-region drill: needs root for ip netns")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("three-region drill: no ip command")
	}
	cleanup := func() {
		for _, r := range regions {
			_ = exec.Command("ip", "link", "del", r.vethHost).Run()
			_ = exec.Command("ip", "netns", "del", r.ns).Run()
		}
		_ = exec.Command("ip", "link", "del", wanBridge).Run()
	}
	cleanup() // leftovers of a run that was killed
	t.Cleanup(cleanup)
	steps := [][]string{
		{"link", "add", wanBridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", wanHostIP, wanPrefix), "dev", wanBridge},
		{"link", "set", wanBridge, "up"},
	}
	for _, r := range regions {
		steps = append(steps,
			[]string{"netns", "add", r.ns},
			[]string{"link", "add", r.vethHost, "type", "veth", "peer", "name", r.vethNS},
			[]string{"link", "set", r.vethNS, "netns", r.ns},
			[]string{"link", "set", r.vethHost, "master", wanBridge},
			[]string{"link", "set", r.vethHost, "up"},
			[]string{"netns", "exec", r.ns, "ip", "link", "set", "lo", "up"},
			[]string{"netns", "exec", r.ns, "ip", "addr", "add", fmt.Sprintf("%s/%d", r.ip, wanPrefix), "dev", r.vethNS},
			[]string{"netns", "exec", r.ns, "ip", "link", "set", r.vethNS, "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(t, s...); err != nil {
			t.Fatal(err)
		}
	}
	// No ping here: the Consul agents' WAN joins across the bridge check
	// the network.
}

// tcpProxy forwards connections accepted on listenIP to target until the
// test ends: PostgreSQL listens on loopback, the namespaces reach it here.
func tcpProxy(t *testing.T, listenIP, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(listenIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return l.Addr().String()
}

// wanRegionMap writes the drill's region map: each city's resolution-3
// cell homes its region; r1 → r2 → r3 → r1 are the fallbacks.
func wanRegionMap(t *testing.T) (string, *dispatch.RegionMap) {
	t.Helper()
	var cells []string
	for _, c := range wanCities {
		var parent geo.Cell
		corners := []geo.LatLng{
			{Lat: c.box.MinLat, Lng: c.box.MinLng}, {Lat: c.box.MinLat, Lng: c.box.MaxLng},
			{Lat: c.box.MaxLat, Lng: c.box.MinLng}, {Lat: c.box.MaxLat, Lng: c.box.MaxLng},
		}
		for i, ll := range corners {
			part, err := geo.CellAt(ll, 7)
			if err != nil {
				t.Fatal(err)
			}
			p, err := part.Parent(3)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && p != parent {
				t.Fatalf("city of %s spans two resolution-3 cells: move its box", c.name)
			}
			parent = p
		}
		cells = append(cells, parent.String())
	}
	doc := fmt.Sprintf(`{"primary":"r1","regions":[
		{"name":"r1","fallback":"r2","cells":[%q]},
		{"name":"r2","fallback":"r3","cells":[%q]},
		{"name":"r3","fallback":"r1","cells":[%q]}]}`, cells[0], cells[1], cells[2])
	path := filepath.Join(t.TempDir(), "regions.json")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := dispatch.ParseRegionMap([]byte(doc), 7)
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}

// ownedIn returns, from the worker at addr, how many partitions of region
// it owns with indexed drivers, and its member count.
func (p *platform) ownedIn(addr, region string, m *dispatch.RegionMap) (owned, members int, err error) {
	resp, err := p.partitions(addr)
	if err != nil {
		return 0, 0, err
	}
	for _, po := range resp.GetPartitions() {
		c, err := geo.ParseCell(po.GetPartition())
		if err != nil {
			return 0, 0, err
		}
		if m.RegionOfPartition(c) == region && po.GetOwner().GetId() == resp.GetSelf().GetId() && po.GetIndexedDrivers() > 0 {
			owned++
		}
	}
	return owned, len(resp.GetMembers()), nil
}

// wanSim is the load of one region: drivers and riders in its city
// through one gateway.
func wanSim(t *testing.T, p *platform, gateway *proc, city sim.BBox, seed uint64, d time.Duration) sim.Config {
	cfg := p.simConfig(t)
	cfg.IDPrefix = fmt.Sprintf("sim%d", seed) // apps of concurrent runs are distinct
	cfg.RiderTargets, cfg.DriverTargets = []string{gateway.addr}, []string{gateway.addr}
	cfg.City = city
	cfg.TripRadius = 1500
	cfg.Drivers = 20
	cfg.Rate = 0.7
	cfg.Duration = d
	cfg.Grace = 60 * time.Second
	cfg.LocationInterval = time.Second
	cfg.DriveTime = time.Second
	cfg.AcceptProbability = 0.9
	cfg.RiderCancelProbability = 0
	cfg.RetryBudget = 30 * time.Second
	cfg.Seed = seed
	return cfg
}

func TestChaosThreeRegions(t *testing.T) {
	drillStart := time.Now()
	var regions []*wanRegion
	for i, c := range wanCities {
		n := i + 1
		regions = append(regions, &wanRegion{
			name: c.name, city: c.box,
			ns: fmt.Sprintf("hxwan%d", n), vethHost: fmt.Sprintf("hxwan%dh", n), vethNS: fmt.Sprintf("hxwan%dn", n),
			ip: fmt.Sprintf("10.232.0.%d", 10+n),
		})
	}
	setupWANNetwork(t, regions)
	mapPath, regionMap := wanRegionMap(t)

	// One PostgreSQL, reached from the namespaces through a proxy on the
	// bridge; migrated once.
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxied := *u
	proxied.Host = tcpProxy(t, wanHostIP, u.Host)
	if out, err := exec.Command(hexrideBinary(t), "migrate", "--db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	// A Consul server per region, its own datacenter, WAN-federated.
	for _, r := range regions {
		r.consul = consultest.StartWithOptions(t, consultest.Options{Datacenter: r.name, BindIP: r.ip, Prefix: r.prefix()})
	}
	for i, r := range regions {
		for _, o := range regions[i+1:] {
			if err := r.consul.JoinWAN(o.consul); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("three datacenters federated at %v", time.Since(drillStart).Round(time.Millisecond))

	sec := newTestSecurity(t)
	common := append(chaosFlags(t), "--region-map", mapPath, "--wan-grace", "2s")
	for _, r := range regions {
		r.p = &platform{consul: r.consul, host: r.ip, sec: sec, dsn: dsn,
			common: append(append([]string{}, common...), "--region", r.name, "--zone", r.name+"-a")}
		r.worker = startProcIn(t, r.name+"-matching", r.prefix(), r.p.flags("--services", "matching")...)
		r.gateway = startProcIn(t, r.name+"-gateway", r.prefix(), r.p.flags("--services", "driver,rider,trip", "--db", proxied.String())...)
	}
	for _, r := range regions { // every worker sees all three, across datacenters
		r.p.waitMembers(t, r.worker.addr, 3, 60*time.Second)
	}
	t.Logf("9 processes up, every worker sees 3 members at %v", time.Since(drillStart).Round(time.Millisecond))

	// Before: rides in every region through its own gateway.
	before := make([]sim.Stats, len(regions))
	var runs []<-chan sim.Stats
	for i, r := range regions {
		runs = append(runs, runSim(t, wanSim(t, r.p, r.gateway, r.city, uint64(1700+i), 20*time.Second)))
	}
	// Each region's worker dispatches its own region's partitions.
	time.Sleep(8 * time.Second)
	for _, r := range regions {
		owned, _, err := r.p.ownedIn(r.worker.addr, r.name, regionMap)
		if err != nil || owned == 0 {
			t.Errorf("%s's worker owns no partition of %s with drivers (err %v)", r.name, r.name, err)
		}
	}
	for i, ch := range runs {
		before[i] = <-ch
	}
	for i, r := range regions {
		s := before[i]
		report(t, fmt.Sprintf("wan drill before the cut: %s: requests %d, completed %d, no driver %d, failed calls %d, match p50 %.0f ms p99 %.0f ms",
			r.name, s.Requests, s.Completed, s.NoDriver, s.Errors, s.MatchP50MS, s.MatchP99MS))
		if s.Errors != 0 || s.Completed == 0 {
			t.Errorf("%s before the cut: %d completed, %d failed calls (%q)", r.name, s.Completed, s.Errors, s.ErrorSamples)
		}
	}

	// During: r1 and r2 keep riding; r3's network is cut 6 s in.
	cut, fallback := regions[2], regions[0] // r3 falls back to r1
	var during []<-chan sim.Stats
	for i, r := range regions[:2] {
		during = append(during, runSim(t, wanSim(t, r.p, r.gateway, r.city, uint64(1800+i), 40*time.Second)))
	}
	time.Sleep(6 * time.Second)
	if err := ipCmd(t, "link", "set", cut.vethHost, "down"); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	t.Logf("%s's network cut at %v", cut.name, cutAt.Sub(drillStart).Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", cut.consul.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("%s's Consul still answers from the host after the cut", cut.name)
	}
	// The fallback: both remaining workers drop r3's worker (their Consul
	// answers no more for r3's datacenter), so r3's partitions are r1's.
	// Bound: the query in flight times out (7.5 s), the next fails too
	// (7.5 s at most), plus --wan-grace; 30 s leaves room for a loaded
	// machine. The agent's streaming view alone took ~45 s here.
	var dropped []time.Duration
	for _, r := range regions[:2] {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, members, err := r.p.ownedIn(r.worker.addr, cut.name, regionMap)
			if err == nil && members == 2 {
				dropped = append(dropped, time.Since(cutAt))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's worker still sees %d members 30 s after the cut (err %v)", r.name, members, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	logLines(t, regions[0].worker, "datacenter", "health query failed")
	report(t, fmt.Sprintf("wan drill: %s cut; r1's worker dropped it after %.1f s, r2's after %.1f s (--wan-grace 2s)",
		cut.name, dropped[0].Seconds(), dropped[1].Seconds()))

	// r3's apps fail over to r1's gateway: r1's worker (r3's fallback)
	// takes r3's partitions and dispatches them.
	failover := runSim(t, wanSim(t, fallback.p, fallback.gateway, cut.city, 1900, 15*time.Second))
	var tookAt time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for tookAt == 0 {
		owned, _, err := fallback.p.ownedIn(fallback.worker.addr, cut.name, regionMap)
		if err == nil && owned > 0 {
			tookAt = time.Since(cutAt)
			report(t, fmt.Sprintf("wan drill: r1's worker owns %d partitions of %s with drivers %.1f s after the cut", owned, cut.name, tookAt.Seconds()))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r1's worker owns no partition of %s with drivers (err %v)", cut.name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var after []sim.Stats
	for _, ch := range during {
		after = append(after, <-ch)
	}
	fo := <-failover
	for i, r := range regions[:2] {
		s := after[i]
		report(t, fmt.Sprintf("wan drill during/after the cut: %s: requests %d, completed %d, no driver %d, failed calls %d, match p50 %.0f ms p99 %.0f ms",
			r.name, s.Requests, s.Completed, s.NoDriver, s.Errors, s.MatchP50MS, s.MatchP99MS))
		if s.Errors != 0 || s.Completed == 0 {
			t.Errorf("%s during the cut: %d completed, %d failed calls (%q)", r.name, s.Completed, s.Errors, s.ErrorSamples)
		}
	}
	report(t, fmt.Sprintf("wan drill after the cut: %s's rides through r1's gateway: requests %d, completed %d, no driver %d, failed calls %d, match p50 %.0f ms p99 %.0f ms",
		cut.name, fo.Requests, fo.Completed, fo.NoDriver, fo.Errors, fo.MatchP50MS, fo.MatchP99MS))
	if fo.Completed == 0 {
		t.Errorf("no ride of %s completed on its fallback", cut.name)
	}

	// Healed: r3's worker is back in the others' member lists (Consul's WAN
	// gossip reconnects first, then the next query answers).
	if err := ipCmd(t, "link", "set", cut.vethHost, "up"); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	for _, r := range regions[:2] {
		r.p.waitMembers(t, r.worker.addr, 3, 90*time.Second)
	}
	report(t, fmt.Sprintf("wan drill: %s healed; r1's and r2's workers list its worker again %.1f s later", cut.name, time.Since(healedAt).Seconds()))

	// The store: every ride answered (no ghost), terminal, no driver on
	// two trips, no Internal seen by any app.
	all := append(append(append([]sim.Stats{}, before...), after...), fo)
	row := checkChaos(t, "three regions, r3 cut (wan drill, all runs)", &platform{dsn: dsn}, sumStats(all))
	total := row.requests
	report(t, fmt.Sprintf("wan drill: %d rides in all, drill took %.0f s", total, time.Since(drillStart).Seconds()))
}

// logLines logs the lines of a process's log that contain any of words.
func logLines(t *testing.T, p *proc, words ...string) {
	t.Helper()
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		t.Logf("%s log: %v", p.name, err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				t.Logf("%s: %s", p.name, line)
				break
			}
		}
	}
}
