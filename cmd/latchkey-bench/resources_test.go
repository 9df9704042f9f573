package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// runJSON runs a subcommand with -json and decodes its report into out.
func runJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(append([]string{"latchkey-bench"}, args...), "-json")
	if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("%v: output is not a report: %v\n%s", args, err, stdout.String())
	}
}

// TestIdle holds a few keep-alive connections to a latchkey: each is
// answered and kept, and none is closed while held.
func TestIdle(t *testing.T) {
	lk := startLatchkey(t)
	var r idleReport
	runJSON(t, &r, "idle", "-url", lk.url, "-c", "5", "-hold", "100ms")
	if r.Connections != 5 || r.Kept != 5 || r.ClosedByServer != 0 || r.Status["200"] != 5 || len(r.Failed) != 0 {
		t.Errorf("idle: %+v, status %v, failed %v; want 5 answered 200 and kept", r, r.Status, r.Failed)
	}
}

// TestSlow sends uploads without credentials, fast enough to finish:
// latchkey reads each form and answers 401, and the uploads start again.
func TestSlow(t *testing.T) {
	lk := startLatchkey(t)
	var r slowReport
	runJSON(t, &r, "slow", "-url", lk.url, "-c", "2", "-size", "200", "-rate", "100000", "-d", "500ms", "-pause", "50ms")
	if r.Uploads < 2 || r.Status["401"] < 2 || len(r.Failed) != 0 {
		t.Errorf("slow: %+v, status %v, failed %v; want every upload answered 401", r, r.Status, r.Failed)
	}
}
