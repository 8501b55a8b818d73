package consul

import (
	"slices"
	"testing"
	"time"
)

func ids(list []Instance) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.ID
	}
	return out
}

func inst(id string) Instance { return Instance{ID: id, Port: 1} }

// The merge and grace rules on an explicit clock.
func TestFederationGrace(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	f := newFederation(2, 2, 3*time.Second, t0) // own, r2, r3

	mustMerged := func(want ...string) {
		t.Helper()
		got, ok := f.merged()
		if !ok {
			t.Fatalf("merged not ready, want %v", want)
		}
		if !slices.Equal(ids(got), want) {
			t.Fatalf("merged = %v, want %v", ids(got), want)
		}
	}

	// Nothing until the own datacenter and every remote one is settled.
	if _, ok := f.merged(); ok {
		t.Fatal("merged ready before any answer")
	}
	f.answered(0, []Instance{inst("w1")})
	f.answered(1, []Instance{inst("w2b"), inst("w2a")})
	if _, ok := f.merged(); ok {
		t.Fatal("merged ready while r3 never answered")
	}
	// r3's first query hangs: given up GraceTime after the start.
	if at, ok := f.nextExpiry(); !ok || !at.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("nextExpiry = %v %v, want start+3s", at, ok)
	}
	if got := f.expire(at(2 * time.Second)); len(got) != 0 {
		t.Fatalf("expired %v before the grace", got)
	}
	if got := f.expire(at(3 * time.Second)); !slices.Equal(got, []int{2}) {
		t.Fatalf("expired %v, want [2]", got)
	}
	mustMerged("w1", "w2a", "w2b")
	f.answered(2, []Instance{inst("w3"), inst("w1")}) // w1 twice: counted once
	mustMerged("w1", "w2a", "w2b", "w3")

	// r2 fails: one failure is not enough, however long ago.
	f.failed(1, at(10*time.Second))
	if got := f.expire(at(20 * time.Second)); len(got) != 0 {
		t.Fatalf("given up after one failure: %v", got)
	}
	mustMerged("w1", "w2a", "w2b", "w3")
	// Two failures, but the grace (from the first) has not run out.
	f.failed(1, at(11*time.Second))
	if got := f.expire(at(12 * time.Second)); len(got) != 0 {
		t.Fatalf("given up within the grace: %v", got)
	}
	if got := f.expire(at(13 * time.Second)); !slices.Equal(got, []int{1}) {
		t.Fatalf("expired %v, want [1]", got)
	}
	mustMerged("w1", "w3")
	if _, ok := f.nextExpiry(); ok {
		t.Fatal("an expiry is pending with r2 down and r3 answering")
	}
	// Back: its workers return.
	f.answered(1, []Instance{inst("w2a")})
	mustMerged("w1", "w2a", "w3")

	// The own datacenter never expires: its last list stays.
	for i := range 5 {
		f.failed(0, at(time.Duration(30+i)*time.Minute))
	}
	f.expire(at(time.Hour))
	mustMerged("w1", "w2a", "w3")
}

// Failures spread out: the grace counts from the first failure of a run,
// and an answer in between starts a new run.
func TestFederationGraceRuns(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newFederation(1, 2, 3*time.Second, t0)
	f.answered(0, nil)
	f.answered(1, []Instance{inst("w2")})
	f.failed(1, t0.Add(time.Second))
	f.answered(1, []Instance{inst("w2")})
	f.failed(1, t0.Add(10*time.Second))
	f.failed(1, t0.Add(11*time.Second)) // 2 failures, 1s into this run
	if got, _ := f.merged(); len(got) != 1 {
		t.Fatalf("given up 1s into a run: %v", ids(got))
	}
	if at, ok := f.nextExpiry(); !ok || !at.Equal(t0.Add(13*time.Second)) {
		t.Fatalf("nextExpiry = %v %v, want first failure of the run + 3s", at, ok)
	}
	f.expire(t0.Add(13 * time.Second))
	if got, _ := f.merged(); len(got) != 0 {
		t.Fatalf("still listed past the grace: %v", ids(got))
	}
}

func TestFederationConfigValidate(t *testing.T) {
	ok := DefaultFederationConfig()
	ok.Remote = []string{"r2", "r3"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*FederationConfig){
		"dup":     func(c *FederationConfig) { c.Remote = []string{"r2", "r2"} },
		"empty":   func(c *FederationConfig) { c.Remote = []string{""} },
		"grace":   func(c *FederationConfig) { c.GraceFailures = 0 },
		"timeout": func(c *FederationConfig) { c.RemoteQueryTimeout = c.RemoteWaitTime },
		"wait":    func(c *FederationConfig) { c.RemoteWaitTime = 0 },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
}

// Failover picks one datacenter: the own while it has an instance, else
// the first remote (in order) that has one and is not given up; it waits
// for a datacenter ahead of the choice that has not answered yet.
func TestFederationFailover(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type dc struct {
		answered bool
		down     bool
		list     []string
	}
	tests := []struct {
		name  string
		dcs   [3]dc // own, first fallback, second
		want  []string
		ready bool
	}{
		{"own has one", [3]dc{{answered: true, list: []string{"a2", "a1"}}, {answered: true, list: []string{"b"}}, {}}, []string{"a1", "a2"}, true},
		{"own empty: first fallback", [3]dc{{answered: true}, {answered: true, list: []string{"b"}}, {answered: true, list: []string{"c"}}}, []string{"b"}, true},
		{"first fallback down: the second", [3]dc{{answered: true}, {down: true}, {answered: true, list: []string{"c"}}}, []string{"c"}, true},
		{"first fallback empty: the second", [3]dc{{answered: true}, {answered: true}, {answered: true, list: []string{"c"}}}, []string{"c"}, true},
		{"first fallback not heard from yet: wait", [3]dc{{answered: true}, {}, {answered: true, list: []string{"c"}}}, nil, false},
		{"own not heard from yet: wait", [3]dc{{}, {answered: true, list: []string{"b"}}, {}}, nil, false},
		{"a later one not heard from does not hold back an earlier choice", [3]dc{{answered: true}, {answered: true, list: []string{"b"}}, {}}, []string{"b"}, true},
		{"nobody anywhere", [3]dc{{answered: true}, {down: true}, {answered: true}}, []string{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFederation(2, 1, time.Second, t0)
			f.failover = true
			for i, d := range tt.dcs {
				switch {
				case d.down:
					f.failed(i, t0.Add(time.Hour)) // past the grace: given up
				case d.answered:
					var list []Instance
					for _, id := range d.list {
						list = append(list, inst(id))
					}
					f.answered(i, list)
				}
			}
			got, ok := f.merged()
			if ok != tt.ready || (ok && !slices.Equal(ids(got), tt.want)) {
				t.Fatalf("merged() = %v, %v; want %v, %v", ids(got), ok, tt.want, tt.ready)
			}
		})
	}
}
