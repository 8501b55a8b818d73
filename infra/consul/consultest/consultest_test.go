package consultest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/hexride/hexride/infra/consul/consultest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAgentLifecycle(t *testing.T) {
	a := consultest.Start(t)
	leader := func() string {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + a.Addr() + "/v1/status/leader")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if l := leader(); !strings.Contains(l, "127.0.0.1:") {
		t.Fatalf("leader = %q", l)
	}
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	if l := leader(); !strings.Contains(l, "127.0.0.1:") {
		t.Fatalf("after restart: leader = %q", l)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if l := leader(); !strings.Contains(l, "refused") {
		t.Fatalf("after stop: %q, want connection refused", l)
	}
}
