package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Summary
	}{
		{"none", nil, Summary{}},
		{"one", []float64{4}, Summary{Median: 4, Min: 4, Max: 4, N: 1}},
		{"odd", []float64{3, 1, 2}, Summary{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []float64{4, 1, 3, 2}, Summary{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"nan ignored", []float64{math.NaN(), 5, 1}, Summary{Median: 3, Min: 1, Max: 5, N: 2}},
		{"input not reordered", []float64{9, 7, 8}, Summary{Median: 8, Min: 7, Max: 9, N: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := Summarize(in); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			for i := range in {
				if !(in[i] == tt.in[i] || math.IsNaN(in[i]) && math.IsNaN(tt.in[i])) {
					t.Errorf("input changed: %v", in)
				}
			}
		})
	}
}

func TestSummaryString(t *testing.T) {
	tests := []struct {
		s    Summary
		want string
	}{
		{Summary{}, "-"},
		{Summary{Median: 7.75, Min: 7.75, Max: 7.75, N: 1}, "7.75"},
		{Summary{Median: 25.31, Min: 24.04, Max: 26.0, N: 3}, "25.3 [24.0..26.0]"},
		{Summary{Median: 12345, Min: 9876, Max: 1.5e6, N: 3}, "12.3k [9876..1.50M]"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestFormatNum(t *testing.T) {
	tests := []struct {
		x    float64
		want string
	}{
		{0, "0"},
		{0.5123, "0.512"},
		{0.0001234, "0.00012"},
		{7.749, "7.75"},
		{9.996, "10.0"},
		{0.99996, "1.00"},
		{25.34, "25.3"},
		{812.4, "812"},
		{2000, "2000"},
		{12345, "12.3k"},
		{999_999, "1.00M"},
		{999_000, "999k"},
		{1_050_000, "1.05M"},
		{-3.5, "-3.50"},
		{math.NaN(), "-"},
		{math.Inf(1), "-"},
	}
	for _, tt := range tests {
		if got := FormatNum(tt.x); got != tt.want {
			t.Errorf("FormatNum(%v) = %q, want %q", tt.x, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(6, 2); got != 3 {
		t.Errorf("Ratio(6, 2) = %v", got)
	}
	if got := Ratio(1, 0); !math.IsNaN(got) {
		t.Errorf("Ratio(1, 0) = %v, want NaN", got)
	}
	if got := FormatRatio(3.125); got != "3.12×" && got != "3.13×" {
		t.Errorf("FormatRatio(3.125) = %q", got)
	}
	if got := FormatRatio(math.NaN()); got != "-" {
		t.Errorf("FormatRatio(NaN) = %q", got)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{512, "512 B"},
		{1536, "1.50 KiB"},
		{99 << 20, "99.0 MiB"},
		{3 << 30, "3.00 GiB"},
		{-2048, "-2.00 KiB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 14 (utime) 1500 and 15 (stime) 250; the command has spaces and
	// a parenthesis in it.
	const stat = "4242 (hex ride) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1500 250 0 0 20 0 9 0 12345 1000000 500 18446744073709551615\n"
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"real line", stat, 1750, false},
		{"plain command", "1 (redis-server) R 0 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 4 0 1 1 1", 10, false},
		{"no command", "1 redis-server R", 0, true},
		{"too short", "1 (x) R 0 1", 0, true},
		{"not a number", "1 (x) R 0 1 1 0 -1 0 0 0 0 0 u 3 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"real", "Name:\thexride\nVmPeak:\t  200000 kB\nVmRSS:\t   65432 kB\nThreads:\t9\n", 65432 << 10, false},
		{"missing", "Name:\tx\nVmSize:\t1 kB\n", 0, true},
		{"bad unit", "VmRSS:\t12 MB\n", 0, true},
		{"bad number", "VmRSS:\tx kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusRSS(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatusRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseLoadAvg(t *testing.T) {
	got, err := parseLoadAvg("0.43 1.65 2.74 1/86 12393\n")
	if err != nil || got != (LoadAvg{0.43, 1.65, 2.74}) {
		t.Errorf("parseLoadAvg = %+v, %v", got, err)
	}
	if got.String() != "0.43 1.65 2.74" {
		t.Errorf("String = %q", got.String())
	}
	for _, bad := range []string{"", "0.1 0.2", "a b c d"} {
		if _, err := parseLoadAvg(bad); err == nil {
			t.Errorf("parseLoadAvg(%q) succeeded", bad)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	got, err := parseSchedstat("4470280 45326 3\n")
	if err != nil || got != 4470280*time.Nanosecond {
		t.Errorf("parseSchedstat = %v, %v", got, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := parseSchedstat(bad); err == nil {
			t.Errorf("parseSchedstat(%q) succeeded", bad)
		}
	}
}

// TestProcReaders reads this process's own /proc files.
func TestProcReaders(t *testing.T) {
	pid := os.Getpid()
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x // burn some CPU so the counters move
	}
	cpu, err := ProcessCPU(pid)
	if err != nil || cpu <= 0 {
		t.Errorf("ProcessCPU = %v, %v", cpu, err)
	}
	precise, err := ProcessCPUPrecise(pid)
	if err != nil || precise <= 0 {
		t.Errorf("ProcessCPUPrecise = %v, %v", precise, err)
	}
	if d := precise - cpu; d < -50*time.Millisecond || d > 200*time.Millisecond {
		t.Errorf("stat says %v, schedstat %v", cpu, precise)
	}
	rss, err := ProcessRSS(pid)
	if err != nil || rss < 1<<20 {
		t.Errorf("ProcessRSS = %d, %v", rss, err)
	}
	if _, err := ReadLoadAvg(); err != nil {
		t.Error(err)
	}
	if SelfCPU() <= 0 {
		t.Error("SelfCPU is zero")
	}
}

func TestCPUBetween(t *testing.T) {
	a := cpuSample{stat: 10 * time.Second, sched: 10*time.Second + 3*time.Millisecond, schedOK: true}
	// Plenty of ticks: /proc/PID/stat.
	b := cpuSample{stat: 12 * time.Second, sched: 12*time.Second + 1*time.Millisecond, schedOK: true}
	if d, ticks, precise := cpuBetween(a, b); d != 2*time.Second || ticks != 200 || precise {
		t.Errorf("cpuBetween = %v, %d, %v", d, ticks, precise)
	}
	// Few ticks: schedstat's nanoseconds.
	c := cpuSample{stat: 10*time.Second + 20*time.Millisecond, sched: 10*time.Second + 27*time.Millisecond, schedOK: true}
	if d, ticks, precise := cpuBetween(a, c); d != 24*time.Millisecond || ticks != 2 || !precise {
		t.Errorf("cpuBetween = %v, %d, %v", d, ticks, precise)
	}
	// No schedstat: stat, however coarse.
	c.schedOK = false
	if d, _, precise := cpuBetween(a, c); d != 20*time.Millisecond || precise {
		t.Errorf("cpuBetween = %v, %v", d, precise)
	}
}

func TestRep(t *testing.T) {
	r := rep{ops: 2000, wall: 2 * time.Second, serverCPU: 500 * time.Millisecond, clientCPU: 1900 * time.Millisecond}
	if got := r.cpuPerOpUS(); got != 250 {
		t.Errorf("cpuPerOpUS = %v", got)
	}
	if got := r.opsPerSec(); got != 1000 {
		t.Errorf("opsPerSec = %v", got)
	}
	if !r.clientBound(2) {
		t.Error("a client at 0.95 cores is saturated")
	}
	r.clientCPU = 400 * time.Millisecond
	if r.clientBound(2) {
		t.Error("a client at 0.2 cores is not saturated")
	}
	// The machine full and the client using more of it than the server.
	r = rep{ops: 1, wall: time.Second, serverCPU: 500 * time.Millisecond, clientCPU: 850 * time.Millisecond}
	if r.clientBound(1) != true || r.clientBound(4) != false {
		t.Error("clientBound on a full machine")
	}
}

func TestAlignWindow(t *testing.T) {
	tests := []struct {
		warmup, window, period time.Duration
		wantWarmup, wantWindow time.Duration
	}{
		{time.Second, 5 * time.Second, 0, time.Second, 5 * time.Second},
		{300 * time.Millisecond, 1500 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond},
		{0, 200 * time.Millisecond, time.Second, 500 * time.Millisecond, time.Second},
		{time.Second, 5 * time.Second, 25 * time.Millisecond, 1012500 * time.Microsecond, 5 * time.Second},
	}
	for _, tt := range tests {
		w, win := alignWindow(tt.warmup, tt.window, tt.period)
		if w != tt.wantWarmup || win != tt.wantWindow {
			t.Errorf("alignWindow(%v, %v, %v) = %v, %v; want %v, %v", tt.warmup, tt.window, tt.period, w, win, tt.wantWarmup, tt.wantWindow)
		}
	}
}

func TestFormatTable(t *testing.T) {
	got := FormatTable([][]string{
		{"id", "what", "µs/op"},
		{"1a", "a heading that runs long past the columns"},
		{"", "hexride", "7.75"},
		{"", "Redis GEOSEARCH", "812 [800..820]"},
	})
	want := "" +
		"id  what             µs/op\n" +
		"1a  a heading that runs long past the columns\n" +
		"    hexride          7.75\n" +
		"    Redis GEOSEARCH  812 [800..820]\n"
	if got != want {
		t.Errorf("FormatTable:\n%s\nwant:\n%s", got, want)
	}
	if FormatTable(nil) != "" {
		t.Error("empty table is not empty")
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"serve", "--http", "", "--dir", "/tmp/a b", "--x", "it's"})
	want := `serve --http '' --dir '/tmp/a b' --x 'it'\''s'`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

func TestPointsAndMove(t *testing.T) {
	a, b := points(1, streamDrivers, 1000), points(1, streamDrivers, 1000)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("points are not reproducible")
		}
		if a[i].Lat < minLat || a[i].Lat > maxLat || a[i].Lng < minLng || a[i].Lng > maxLng {
			t.Fatalf("point %v outside the box", a[i])
		}
	}
	if c := points(1, streamQueries, 1); c[0] == a[0] {
		t.Error("streams share a sequence")
	}
	r := rand.New(rand.NewPCG(1, 2))
	p := point{minLat, minLng} // a corner: moves must turn back in
	for range 10000 {
		q := move(p, 8, r)
		if q.Lat < minLat || q.Lat > maxLat || q.Lng < minLng || q.Lng > maxLng {
			t.Fatalf("moved out of the box: %v", q)
		}
		// 8 m is about 7.2e-5° of latitude; a few metres, never more.
		if dLat, dLng := math.Abs(q.Lat-p.Lat), math.Abs(q.Lng-p.Lng); dLat > 8.1/metresPerDegLat || dLng > 8.1/(metresPerDegLat*0.78) {
			t.Fatalf("moved too far: %v → %v", p, q)
		}
		p = q
	}
}

func TestMover(t *testing.T) {
	ids := []string{"a", "b", "c"}
	pos := points(1, streamDrivers, 3)
	m := newMover(ids, pos, 3)
	r := rand.New(rand.NewPCG(1, 1))
	got, moved := m.take(4, r, nil, nil)
	if strings.Join(got, ",") != "a,b,c,a" {
		t.Errorf("take = %v", got)
	}
	if moved[0] == pos[0] {
		t.Error("take did not move the driver")
	}
	if pos[0] != points(1, streamDrivers, 3)[0] {
		t.Error("the mover changed the canonical positions")
	}
}

func TestConfigValidate(t *testing.T) {
	base := QuickConfig()
	base.HexrideBin = "/bin/hexride"
	if err := base.Validate(); err != nil {
		t.Fatalf("quick config: %v", err)
	}
	full := DefaultConfig()
	full.HexrideBin = "/bin/hexride"
	if err := full.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no binary", func(c *Config) { c.HexrideBin = "" }},
		{"no reps", func(c *Config) { c.Reps = 0 }},
		{"tiny window", func(c *Config) { c.Window = time.Millisecond }},
		{"samples faster than the gateway takes", func(c *Config) { c.SampleInterval = 500 * time.Millisecond }},
		{"batch too large", func(c *Config) { c.Batch = 6000 }},
		{"sizes descending", func(c *Config) { c.Sizes = []int{2000, 1000} }},
		{"idle streams not ascending", func(c *Config) { c.IdleStreams = []int{10, 10} }},
		{"zero connections", func(c *Config) { c.QueryConns = []int{0} }},
		{"no sizes", func(c *Config) { c.Sizes = nil }},
		{"short ttl", func(c *Config) { c.DriverTTL = time.Second }},
		{"unknown part", func(c *Config) { c.Only = []string{PartIdle, "streams"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}

func TestConfigRuns(t *testing.T) {
	c := QuickConfig()
	for _, p := range Parts {
		if !c.runs(p) {
			t.Errorf("without --only, part %s is skipped", p)
		}
	}
	c.Only = []string{PartIdle, PartSamples}
	if !c.runs(PartIdle) || !c.runs(PartSamples) || c.runs(PartIndex) {
		t.Errorf("only %v: idle %v, samples %v, index %v", c.Only, c.runs(PartIdle), c.runs(PartSamples), c.runs(PartIndex))
	}
}

func TestReportOutput(t *testing.T) {
	cell := func(sys string, cpu, ops float64) Cell {
		return Cell{System: sys, What: "w", CPUPerOpUS: Summarize([]float64{cpu}), OpsPerSec: Summarize([]float64{ops}), ClientCores: Summarize([]float64{0.2})}
	}
	r := &Report{
		CPUs: 2, Config: Config{Reps: 3},
		Hexride: Process{Command: "hexride serve"}, Redis: Process{Command: "redis-server", Version: "v7"},
		Idle: []IdleCPU{{Phase: "index", HexrideCores: 0.011, RedisCores: 0.002}},
		Rows: []Row{{ID: "3a", Workload: "nearest", Hexride: cell(Hexride, 10, 1000), Redis: cell(Redis, 700, 1200),
			CPURatio: Ratio(10, 700), OpsRatio: math.NaN()}},
		Memory:   []MemRow{{ID: "4a", Workload: "memory", Hexride: MemCell{System: Hexride, BytesPer: 95, RSS: 200 << 20, Baseline: 50 << 20}, Redis: MemCell{System: Redis, BytesPer: 128}, Ratio: 95.0 / 128}},
		Refused:  map[string]int64{"rate_limited": 2},
		Warnings: []string{"w1"},
	}
	r.Rows[0].Redis.ClientBound = true
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"median [min..max] of 3", "hexride serve", "redis-server (v7)", "11.0 ms/s", "3a  nearest", "0.014×", "4a  memory", "rate_limited 2", "warning: w1", "client cores", "0.200 *"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if strings.Count(js.String(), "\n") != 1 {
		t.Errorf("JSON is not one line: %q", js.String())
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Rows[0].OpsRatio != 0 || back.Rows[0].Hexride.CPUPerOpUS.Median != 10 {
		t.Errorf("round trip: %+v", back.Rows[0])
	}
	if !math.IsNaN(r.Rows[0].OpsRatio) {
		t.Error("WriteJSON changed the report")
	}
}

func TestFindRedisMissing(t *testing.T) {
	_, err := FindRedis("/nonexistent/redis-server")
	if err == nil || !strings.Contains(err.Error(), RedisInstallHint) {
		t.Errorf("FindRedis error %v does not say how to install it", err)
	}
}

func TestRespCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"CLIENT", "REPLY", "OFF"}, "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n"},
		{[]string{"GEOADD", "k", "-122.4", "37.7", ""}, "*5\r\n$6\r\nGEOADD\r\n$1\r\nk\r\n$6\r\n-122.4\r\n$4\r\n37.7\r\n$0\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(respCommand([]byte("x"), tt.args...)); got != "x"+tt.want {
			t.Errorf("respCommand(%q) = %q, want %q", tt.args, got, "x"+tt.want)
		}
	}
}

// TestFloorServers runs both floor servers in-process and sends them
// samples over real sockets: each must read every one (the gRPC one from
// a Connect stream, the TCP one as length-prefixed frames) and return
// when ctx ends.
func TestFloorServers(t *testing.T) {
	for _, kind := range FloorKinds {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			var received atomic.Int64
			done := make(chan error, 1)
			go func() { done <- serveFloor(ctx, kind, "127.0.0.1:0", pw, func() { received.Add(1) }) }()
			line, err := bufio.NewReader(pr).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			m := floorServingLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("serving line %q", line)
			}
			const apps = 5
			pts := points(1, streamApps, apps)
			var f *floorFleet
			if kind == FloorGRPC {
				f, err = openFloorGRPC(ctx, m[1], pts, 1)
			} else {
				f, err = openFloorTCP(ctx, m[1], pts, 1)
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range pts { // the second sample of each (open sent the first)
				if err := f.send(i, time.Now()); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for received.Load() < 2*apps && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := received.Load(); got != 2*apps {
				t.Fatalf("the %s floor read %d samples, want %d", kind, got, 2*apps)
			}
			f.close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("serveFloor: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serveFloor did not return after ctx ended")
			}
			pw.Close()
		})
	}
	if err := ServeFloor(context.Background(), "udp", "127.0.0.1:0", io.Discard); err == nil || !strings.Contains(err.Error(), "unknown floor server") {
		t.Errorf("unknown kind: %v", err)
	}
}
