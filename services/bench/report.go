package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Systems measured.
const (
	Hexride = "hexride"
	Redis   = "redis"
)

// Cell is one system's side of a row: repeated measurements of the same
// workload, summarized.
type Cell struct {
	System string `json:"system"`
	// What the system was asked to do, as its clients did it.
	What string `json:"what"`
	// CPUPerOpUS is server CPU (utime+stime of the server process from
	// /proc/PID/stat over the window) per operation, in microseconds.
	CPUPerOpUS Summary `json:"cpu_us_per_op"`
	// OpsPerSec is operations completed per second of the window.
	OpsPerSec Summary `json:"ops_per_sec"`
	// ServerCores and ClientCores are CPU seconds per wall second of the
	// server process and of this bench process (the load generator).
	ServerCores Summary `json:"server_cores"`
	ClientCores Summary `json:"client_cores"`
	// CPUTicks is the smallest per-window server CPU in /proc/PID/stat
	// clock ticks (10 ms). PreciseReps counts windows under 100 ticks,
	// whose CPU came from /proc/PID/task/*/schedstat (ns) instead.
	CPUTicks    int64 `json:"min_cpu_ticks"`
	PreciseReps int   `json:"schedstat_reps"`
	// ClientBound: the bench client was saturated in at least one window,
	// so ops/s measures the client as much as the server.
	ClientBound bool  `json:"client_bound"`
	Errors      int64 `json:"errors"`
	// FirstError is the first failed operation's error, when any failed.
	FirstError string `json:"first_error,omitempty"`

	reps []rep
}

// Row compares hexride and Redis on one workload.
type Row struct {
	ID       string `json:"id"`
	Workload string `json:"workload"`
	Hexride  Cell   `json:"hexride"`
	Redis    Cell   `json:"redis"`
	// CPURatio and OpsRatio are hexride/Redis of the medians.
	CPURatio float64 `json:"cpu_ratio"`
	OpsRatio float64 `json:"ops_ratio"`
	Note     string  `json:"note,omitempty"`
	// Floors are servers doing none of hexride's work on the same traffic
	// (System Floor), measured interleaved with the row's cells;
	// FloorRatios are hexride/floor of the CPU medians, in the same order.
	Floors      []Cell    `json:"floors,omitempty"`
	FloorRatios []float64 `json:"floor_cpu_ratios,omitempty"`
}

// MemCell is one system's memory figure.
type MemCell struct {
	System string `json:"system"`
	What   string `json:"what"`
	// BytesPer is (RSS − baseline RSS) / Count.
	BytesPer float64 `json:"bytes_per"`
	// RSS and Baseline are VmRSS of the server process, in bytes.
	RSS      int64 `json:"rss_bytes"`
	Baseline int64 `json:"baseline_rss_bytes"`
	Count    int   `json:"count"`
}

// MemRow compares memory per driver or per connection.
type MemRow struct {
	ID       string  `json:"id"`
	Workload string  `json:"workload"`
	Hexride  MemCell `json:"hexride"`
	Redis    MemCell `json:"redis"`
	Ratio    float64 `json:"ratio"`
	Note     string  `json:"note,omitempty"`
	// Floors and FloorRatios: as in Row, for memory.
	Floors      []MemCell `json:"floors,omitempty"`
	FloorRatios []float64 `json:"floor_ratios,omitempty"`
}

// Process describes a server the bench ran.
type Process struct {
	Command string `json:"command"`
	Version string `json:"version,omitempty"`
}

// IdleCPU is the servers' CPU (cores) with no load, per phase.
type IdleCPU struct {
	Phase        string  `json:"phase"`
	HexrideCores float64 `json:"hexride_cores"`
	RedisCores   float64 `json:"redis_cores"`
}

// Report is everything a run measured.
type Report struct {
	Started      time.Time `json:"started"`
	Seconds      float64   `json:"seconds"`
	CPUs         int       `json:"cpus"`
	LoadAvgStart LoadAvg   `json:"loadavg_start"`
	LoadAvgEnd   LoadAvg   `json:"loadavg_end"`
	Hexride      Process   `json:"hexride"`
	Redis        Process   `json:"redis"`
	Config       Config    `json:"config"`
	// Idle is each phase's servers' CPU with no load.
	Idle   []IdleCPU `json:"idle_cpu"`
	Rows   []Row     `json:"rows"`
	Memory []MemRow  `json:"memory"`
	// Refused counts location samples the gateway refused, by reason.
	Refused  map[string]int64 `json:"refused_samples"`
	Warnings []string         `json:"warnings"`
	Errors   []string         `json:"errors"`
}

// WriteJSON writes the report as one line of JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	data, err := json.Marshal(r.jsonSafe())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// fixAll returns a copy of xs with fix applied to each.
func fixAll(xs []float64, fix func(float64) float64) []float64 {
	if xs == nil {
		return nil
	}
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = fix(x)
	}
	return out
}

// jsonSafe replaces NaN and infinite ratios (no JSON encoding) by 0.
func (r *Report) jsonSafe() *Report {
	c := *r
	fix := func(x float64) float64 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return x
	}
	c.Rows = append([]Row(nil), r.Rows...)
	for i := range c.Rows {
		c.Rows[i].CPURatio, c.Rows[i].OpsRatio = fix(c.Rows[i].CPURatio), fix(c.Rows[i].OpsRatio)
		c.Rows[i].FloorRatios = fixAll(c.Rows[i].FloorRatios, fix)
	}
	c.Memory = append([]MemRow(nil), r.Memory...)
	for i := range c.Memory {
		c.Memory[i].Ratio = fix(c.Memory[i].Ratio)
		c.Memory[i].FloorRatios = fixAll(c.Memory[i].FloorRatios, fix)
		c.Memory[i].Hexride.BytesPer, c.Memory[i].Redis.BytesPer = fix(c.Memory[i].Hexride.BytesPer), fix(c.Memory[i].Redis.BytesPer)
	}
	return &c
}

// WriteTable writes the human-readable report.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "hexride bench: server CPU per operation over real sockets, hexride beside Redis on the same points\n")
	fmt.Fprintf(&b, "median [min..max] of %d interleaved repetitions; server CPU = utime+stime of the server process (/proc/PID/stat, 10 ms ticks)\n", r.Config.Reps)
	fmt.Fprintf(&b, "hexride: %s\n", r.Hexride.Command)
	fmt.Fprintf(&b, "Redis:   %s", r.Redis.Command)
	if r.Redis.Version != "" {
		fmt.Fprintf(&b, " (%s)", r.Redis.Version)
	}
	fmt.Fprintf(&b, "\nmachine: %d CPUs, the bench client shares them; load average at start %s, at end %s; run took %.0f s\n",
		r.CPUs, r.LoadAvgStart, r.LoadAvgEnd, r.Seconds)
	if len(r.Config.Only) > 0 {
		fmt.Fprintf(&b, "parts measured: %s only (of %s)\n", strings.Join(r.Config.Only, ", "), strings.Join(Parts, ", "))
	}
	for _, i := range r.Idle {
		fmt.Fprintf(&b, "idle server CPU (%s phase, no load): hexride %s ms/s, Redis %s ms/s (included in every figure below)\n",
			i.Phase, FormatNum(i.HexrideCores*1000), FormatNum(i.RedisCores*1000))
	}
	b.WriteString("\n")

	t := [][]string{{"", "workload / system", "server CPU µs/op", "ops/s", "client cores"}}
	for _, row := range r.Rows {
		t = append(t, []string{row.ID, row.Workload})
		for _, c := range []Cell{row.Hexride, row.Redis} {
			mark := ""
			if c.ClientBound {
				mark = " *"
			}
			if c.Errors > 0 {
				mark += fmt.Sprintf(" (%d errors)", c.Errors)
			}
			t = append(t, []string{"", fmt.Sprintf("  %-7s %s", c.System, c.What), c.CPUPerOpUS.String(), c.OpsPerSec.String(), c.ClientCores.String() + mark})
		}
		t = append(t, []string{"", "  hexride/Redis", FormatRatio(row.CPURatio), FormatRatio(row.OpsRatio), ""})
		for i, c := range row.Floors {
			mark := ""
			if c.ClientBound {
				mark = " *"
			}
			t = append(t, []string{"", fmt.Sprintf("  %-7s %s", c.System, c.What), c.CPUPerOpUS.String(), c.OpsPerSec.String(), c.ClientCores.String() + mark})
			t = append(t, []string{"", "  hexride/floor", FormatRatio(row.FloorRatios[i]), "", ""})
		}
		if row.Note != "" {
			t = append(t, []string{"", "  note: " + row.Note})
		}
	}
	b.WriteString(FormatTable(t))

	if len(r.Memory) > 0 {
		b.WriteString("\n")
		m := [][]string{{"", "memory / system", "bytes each", "RSS (baseline)", ""}}
		for _, row := range r.Memory {
			m = append(m, []string{row.ID, row.Workload})
			for _, c := range []MemCell{row.Hexride, row.Redis} {
				m = append(m, []string{"", fmt.Sprintf("  %-7s %s", c.System, c.What), FormatNum(c.BytesPer),
					fmt.Sprintf("%s (%s)", FormatBytes(c.RSS), FormatBytes(c.Baseline)), ""})
			}
			m = append(m, []string{"", "  hexride/Redis", FormatRatio(row.Ratio), "", ""})
			for i, c := range row.Floors {
				m = append(m, []string{"", fmt.Sprintf("  %-7s %s", c.System, c.What), FormatNum(c.BytesPer),
					fmt.Sprintf("%s (%s)", FormatBytes(c.RSS), FormatBytes(c.Baseline)), ""})
				m = append(m, []string{"", "  hexride/floor", FormatRatio(row.FloorRatios[i]), "", ""})
			}
			if row.Note != "" {
				m = append(m, []string{"", "  note: " + row.Note})
			}
		}
		b.WriteString(FormatTable(m))
	}
	if len(r.Refused) > 0 {
		fmt.Fprintf(&b, "\nlocation samples refused by the gateway: %s\n", formatCounts(r.Refused))
	}
	if anyClientBound(r.Rows) {
		b.WriteString("\n* the bench client was saturated (≥ 90 % of a core, or the machine was full and the client used more than the server): ops/s is client-bound there; CPU/op is still the server's.\n")
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func anyClientBound(rows []Row) bool {
	for _, r := range rows {
		if r.Hexride.ClientBound || r.Redis.ClientBound {
			return true
		}
		for _, f := range r.Floors {
			if f.ClientBound {
				return true
			}
		}
	}
	return false
}

func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// shellJoin renders args for a shell (quoted where needed).
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// FormatBytes renders a byte count in binary units: 512 B, 1.5 KiB, 94.6 MiB.
func FormatBytes(n int64) string {
	x := float64(n)
	switch {
	case n < 0:
		return "-" + FormatBytes(-n)
	case x >= 1<<30:
		return sig3(x/(1<<30)) + " GiB"
	case x >= 1<<20:
		return sig3(x/(1<<20)) + " MiB"
	case x >= 1<<10:
		return sig3(x/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%d B", n)
}

// FormatTable aligns rows in columns separated by two spaces. A row with
// fewer cells than the header is a heading: it is printed as is and does
// not widen the columns (its last cell may run past them).
func FormatTable(rows [][]string) string {
	if len(rows) == 0 {
		return ""
	}
	ncol := len(rows[0])
	width := make([]int, ncol)
	for _, r := range rows {
		if len(r) < ncol {
			continue
		}
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			line.WriteString(c)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", max(0, width[i]-utf8.RuneCountInString(c))))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	return b.String()
}
