package main

import (
	"strings"
	"testing"
)

// A cut-down govulncheck stream: GO-2026-0001 is called in the standard
// library and in golang.org/x/net, GO-2026-0002 only imported.
const stream = `{"config":{"scanner_version":"v1.9.0","db":"file:///db","go_version":"go1.26.8","scan_level":"symbol"}}
{"osv":{"id":"GO-2026-0001","summary":"one"}}
{"osv":{"id":"GO-2026-0002","summary":"two"}}
{"finding":{"osv":"GO-2026-0002","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.0.0","package":"example.com/m/p"}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v1.26.9","trace":[
  {"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Do","receiver":"*Client"},
  {"module":"github.com/latchkey/latchkey","package":"github.com/latchkey/latchkey/cmd/latchkey","function":"main","position":{"filename":"cmd/latchkey/main.go","line":24,"column":12}}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.60.0","trace":[
  {"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"ReadFrame","receiver":"*Framer"},
  {"module":"github.com/latchkey/latchkey","package":"github.com/latchkey/latchkey/server","function":"serve","position":{"filename":"server/server.go","line":7,"column":3}}]}}
`

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accepted map[key]string
		pass     bool
		want     []string
	}{
		{"nothing accepted", nil, false, []string{
			"CALLED   GO-2026-0001 golang.org/x/net@v0.59.0 (fixed in v0.60.0): one",
			"CALLED   GO-2026-0001 stdlib@v1.26.8 (fixed in v1.26.9): one",
			"net/http.Client.Do, reached from cmd/latchkey/main.go:24:12 latchkey.main",
			"called vulnerabilities: 2, of which accepted 0; 1 more",
		}},
		{"the standard library's half accepted", map[key]string{{"GO-2026-0001", "stdlib"}: ""}, false, []string{
			"CALLED   GO-2026-0001 golang.org/x/net@v0.59.0",
			"accepted GO-2026-0001 stdlib@v1.26.8",
		}},
		{"both accepted, one stale", map[key]string{
			{"GO-2026-0001", "stdlib"}:           "",
			{"GO-2026-0001", "golang.org/x/net"}: "",
			{"GO-2026-0003", "stdlib"}:           "",
		}, true, []string{
			"no longer reported, can leave the accepted list: GO-2026-0003 stdlib",
			"called vulnerabilities: 2, of which accepted 2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := parse(strings.NewReader(stream))
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if got := gate(&out, rep, tc.accepted); got != tc.pass {
				t.Errorf("gate = %v, want %v\n%s", got, tc.pass, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// A scan that stopped before writing anything must not read as clean.
func TestParseNeedsConfig(t *testing.T) {
	if _, err := parse(strings.NewReader("")); err == nil {
		t.Error("empty stream parsed without error")
	}
	if _, err := parse(strings.NewReader(`{"config":{"scan_level":"module"}}`)); err == nil {
		t.Error("module-level scan accepted")
	}
}
