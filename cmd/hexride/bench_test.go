package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hexride/hexride/services/bench"
)

// TestBenchQuick runs `hexride bench --quick` end to end against the built
// binary (which starts its own hexride process and Redis server) with tiny
// sizes and checks every row of the JSON report.
func TestBenchQuick(t *testing.T) {
	if _, err := bench.FindRedis(""); err != nil {
		t.Fatalf("hexride bench needs Redis: %v", err)
	}
	bin := hexrideBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "--quick", "--json", "--quiet",
		"--window", "700ms", "--warmup", "150ms", "--settle", "200ms",
		"--stream-drivers", "200", "--redis-clients", "10", "--idle-streams", "100,200",
		"--sizes", "5000", "--steady", "1s", "--callers", "2")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEXRIDE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	// SIGTERM first: the bench stops the servers it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("hexride bench --quick took %v:\n%s", took.Round(time.Second), stdout.String())
	if err != nil {
		t.Fatalf("hexride bench (%v, bounded by 120 s): %v\nstderr:\n%s", took.Round(time.Second), err, stderr.String())
	}

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var rep bench.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("the last line is not the JSON report: %v", err)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("report errors: %v", rep.Errors)
	}
	wantRows := []string{"1a", "1b", "1c", "2a", "2b", "3a", "3b"}
	var gotRows []string
	for _, row := range rep.Rows {
		gotRows = append(gotRows, row.ID)
		for _, c := range []bench.Cell{row.Hexride, row.Redis} {
			if c.CPUPerOpUS.N != rep.Config.Reps || c.CPUPerOpUS.Median <= 0 || c.CPUPerOpUS.Min <= 0 {
				t.Errorf("row %s %s: CPU/op %+v, want %d positive repetitions", row.ID, c.System, c.CPUPerOpUS, rep.Config.Reps)
			}
			if c.OpsPerSec.Median <= 0 || c.OpsPerSec.Min <= 0 {
				t.Errorf("row %s %s: ops/s %+v", row.ID, c.System, c.OpsPerSec)
			}
			if c.Errors != 0 {
				t.Errorf("row %s %s: %d errors", row.ID, c.System, c.Errors)
			}
		}
		wantFloors := 0
		if row.ID == "1a" {
			wantFloors = 3 // gRPC, Go TCP, Redis without replies
		}
		if len(row.Floors) != wantFloors || len(row.FloorRatios) != wantFloors {
			t.Errorf("row %s: %d floors, %d floor ratios, want %d", row.ID, len(row.Floors), len(row.FloorRatios), wantFloors)
		}
		for i, c := range row.Floors {
			if c.System != bench.Floor || c.CPUPerOpUS.N != rep.Config.Reps || c.CPUPerOpUS.Min <= 0 || c.OpsPerSec.Min <= 0 || c.Errors != 0 || row.FloorRatios[i] <= 0 {
				t.Errorf("row %s floor %d (%s): %+v, ratio %v", row.ID, i, c.What, c, row.FloorRatios[i])
			}
		}
		if row.Hexride.System != bench.Hexride || row.Redis.System != bench.Redis || row.CPURatio <= 0 || row.OpsRatio <= 0 {
			t.Errorf("row %s: systems %s/%s, ratios %v %v", row.ID, row.Hexride.System, row.Redis.System, row.CPURatio, row.OpsRatio)
		}
	}
	if strings.Join(gotRows, ",") != strings.Join(wantRows, ",") {
		t.Errorf("rows %v, want %v", gotRows, wantRows)
	}
	wantMem := []string{"4a", "4b", "4c", "4d"}
	var gotMem []string
	for _, m := range rep.Memory {
		gotMem = append(gotMem, m.ID)
		cells := []bench.MemCell{m.Hexride, m.Redis}
		if m.ID == "4c" || m.ID == "4d" { // idle streams: gRPC and Go TCP floors beside them
			if len(m.Floors) != 2 || len(m.FloorRatios) != 2 {
				t.Errorf("memory %s: %d floors, %d ratios, want 2", m.ID, len(m.Floors), len(m.FloorRatios))
			}
			cells = append(cells, m.Floors...)
		}
		for _, c := range cells {
			if c.RSS <= 0 || c.Baseline <= 0 || c.Count <= 0 || c.BytesPer <= 0 {
				t.Errorf("memory %s %s: %+v", m.ID, c.System, c)
			}
		}
	}
	if strings.Join(gotMem, ",") != strings.Join(wantMem, ",") {
		t.Errorf("memory rows %v, want %v", gotMem, wantMem)
	}
	if len(rep.Idle) != 2 || rep.LoadAvgStart == (bench.LoadAvg{}) && rep.LoadAvgEnd == (bench.LoadAvg{}) {
		t.Errorf("idle CPU %+v, load averages %v %v", rep.Idle, rep.LoadAvgStart, rep.LoadAvgEnd)
	}
	if n := rep.Refused["rate_limited"]; n > 0 {
		t.Errorf("the gateway refused %d samples as rate limited: the apps send too often", n)
	}
	for _, want := range []string{"server CPU µs/op", "hexride/Redis", "hexride/floor", "load average at start"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

func TestWantsQuick(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		args []string
		env  func(string) string
		want bool
	}{
		{nil, none, false},
		{[]string{"--quick"}, none, true},
		{[]string{"-quick"}, none, true},
		{[]string{"--json", "--quick=true"}, none, true},
		{[]string{"--quick=false"}, none, false},
		{[]string{"--", "--quick"}, none, false},
		{[]string{"--quickly"}, none, false},
		{nil, func(k string) string {
			if k == "HEXRIDE_QUICK" {
				return "1"
			}
			return ""
		}, true},
	}
	for _, tt := range tests {
		if got := wantsQuick(tt.args, tt.env); got != tt.want {
			t.Errorf("wantsQuick(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestIntList(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"1,4", "1,4", false},
		{"100k, 1M", "100000,1000000", false},
		{"1_000", "1000", false},
		{"", "", true},
		{"0", "", true},
		{"x", "", true},
	}
	for _, tt := range tests {
		var l intList
		err := l.Set(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && l.String() != tt.want) {
			t.Errorf("Set(%q) = %q, %v; want %q, error %v", tt.in, l.String(), err, tt.want, tt.wantErr)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--sizes", "nope"}, &stdout, &stderr); err == nil {
		t.Error("bad --sizes accepted")
	}
	stderr.Reset()
	if err := run(context.Background(), []string{"bench", "--reps", "0"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "reps") {
		t.Errorf("--reps 0: %v", err)
	}
	stderr.Reset()
	if err := run(context.Background(), []string{"bench", "--only", "samples,nope"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), `unknown part "nope"`) {
		t.Errorf("--only samples,nope: %v", err)
	}
	if stdout.Len() > 0 {
		t.Errorf("a refused configuration printed a report:\n%s", stdout.String())
	}
}
