package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // "sqlite3", for PRAGMA integrity_check; storage imports it too
)

// These tests stop a real `latchkey serve` process on a real SQLite file the
// two ways a process is stopped: SIGKILL (a crash, an OOM kill) must lose
// nothing the server acknowledged, and SIGTERM (a deploy) must finish the
// requests in flight, refuse new connections and exit 0.

const (
	procSecret    = "process-test-system-secret-0123456789abcdef"
	procBootstrap = "process-test-bootstrap-token-0123456789abcdef"
)

// procEnv is a complete environment for one server on the SQLite file db:
// nothing leaks in from the developer's shell.
func procEnv(db string, extra ...string) []string {
	return append([]string{
		"LATCHKEY_DATABASE=sqlite://" + db,
		"LATCHKEY_SECRET=" + procSecret,
		"LATCHKEY_BOOTSTRAP_TOKEN=" + procBootstrap,
		"LATCHKEY_LISTEN=127.0.0.1:0",
		"LATCHKEY_ISSUER=http://127.0.0.1",
	}, extra...)
}

// lkProc is one `latchkey serve` process that the test stops itself, with
// SIGKILL or SIGTERM; t.Cleanup kills it if the test did not.
type lkProc struct {
	name           string
	cmd            *exec.Cmd
	addr, base     string // host:port and http://host:port, set once ready
	stdout, stderr *syncBuffer
	done           chan struct{}    // closed once the process has exited
	state          *os.ProcessState // valid once done is closed
}

// startLatchkey starts `latchkey serve` with env and waits until /readyz
// answers 200.
func startLatchkey(t *testing.T, name string, env []string) *lkProc {
	t.Helper()
	p := &lkProc{name: name, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(latchkeyBinary(t), "serve")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if s := p.stderr.String(); strings.Contains(s, "panic") {
			t.Errorf("%s logged a panic:\n%s", p.name, tail(s))
		}
		if t.Failed() {
			t.Logf("%s warnings and errors:\n%s", p.name, tail(problemLines(p.stderr.String())))
		}
	})
	ready := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before it was ready (%v)\n%s", name, p.state, tail(p.stderr.String()))
		}
		if p.addr == "" {
			if m := listening.FindStringSubmatch(p.stdout.String()); m != nil {
				p.addr, p.base = m[1], "http://"+m[1]
			}
		}
		if p.addr != "" {
			if resp, err := ready.Get(p.base + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready.CloseIdleConnections()
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 20s\n%s", name, tail(p.stderr.String()))
	return nil
}

func (p *lkProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits until the process has exited or timeout has passed.
func (p *lkProc) waitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop sends SIGTERM and requires a clean exit (code 0) within timeout.
func (p *lkProc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	if !p.waitExit(timeout) {
		t.Fatalf("%s still running %v after SIGTERM", p.name, timeout)
	}
	if code := p.state.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %v after SIGTERM, want code 0\n%s", p.name, p.state, tail(p.stderr.String()))
	}
}

// procDo is replicaDo with a client of the caller's own.
func procDo(ctx context.Context, c *http.Client, method, u string, body io.Reader, prepare func(*http.Request)) replicaResp {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return replicaResp{err: err}
	}
	if prepare != nil {
		prepare(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		return replicaResp{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return replicaResp{status: resp.StatusCode, body: b, took: time.Since(start), err: err}
}

func procToken(ctx context.Context, c *http.Client, base string, kp replicaKeyPair) replicaResp {
	return procDo(ctx, c, "POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(kp.id, kp.secret)
	})
}

// createIntegration creates an integration through the admin API with the
// bootstrap token and returns its key pair.
func createIntegration(t *testing.T, base string, body map[string]any) replicaKeyPair {
	t.Helper()
	what := fmt.Sprintf("create integration %v", body["name"])
	m := replicaExpect(t, what, http.StatusCreated, replicaAdmin(t.Context(), base, procBootstrap, "POST", "/admin/integrations", body))
	return mustKeyPair(t, what, m["key_pair"])
}

// checkIntrospect introspects tok as the resource server rs and compares
// the answer with what is expected: active for clientID (and integration
// sub), or exactly {"active": false}.
func checkIntrospect(ctx context.Context, base string, rs replicaKeyPair, tok string, active bool, clientID, sub string) error {
	r := replicaIntrospect(ctx, base, rs, tok)
	m := r.object()
	switch {
	case r.err != nil || r.status != http.StatusOK || m == nil:
		return fmt.Errorf("introspect: %v", r)
	case active && (m["active"] != true || m["client_id"] != clientID || m["sub"] != sub):
		return fmt.Errorf("introspect: got %s, want active with client_id %s and sub %s", r.body, clientID, sub)
	case !active && !inactive(m):
		return fmt.Errorf("introspect: got %s, want {\"active\":false}", r.body)
	}
	return nil
}

// sqliteCheck opens the SQLite file at path (which must exist: the driver
// would otherwise make an empty one, which is always "ok") and requires
// PRAGMA integrity_check to answer "ok" and foreign_key_check nothing.
func sqliteCheck(t *testing.T, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=rw&_busy_timeout=5000")
	if err != nil {
		t.Fatalf("%s: open: %v", what, err)
	}
	defer db.Close()
	strs := func(query string) []string {
		rows, err := db.Query(query)
		if err != nil {
			t.Fatalf("%s: %s: %v", what, query, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("%s: %s: %v", what, query, err)
			}
			out = append(out, fmt.Sprint(vals...))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %s: %v", what, query, err)
		}
		return out
	}
	if tables := strs("SELECT name FROM sqlite_master WHERE type = 'table'"); len(tables) < 3 {
		t.Fatalf("%s: only tables %v: not latchkey's database", what, tables)
	}
	if got := strs("PRAGMA integrity_check"); len(got) != 1 || got[0] != "ok" {
		t.Errorf("%s: PRAGMA integrity_check = %q, want [ok]", what, got)
	}
	if got := strs("PRAGMA foreign_key_check"); len(got) != 0 {
		t.Errorf("%s: PRAGMA foreign_key_check = %q, want nothing", what, got)
	}
}

// copyCrashed copies the database and its WAL, as the crash left them, to
// a directory of their own: checking them there leaves the originals for
// the restarted server to recover by itself.
func copyCrashed(t *testing.T, db string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(db))
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(db + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// --- kill -9 ---

// loadToken is a token the server answered 200 for, from one of the load
// integrations, which nothing ever changes: it must stay active.
type loadToken struct {
	token string
	ig    int // index into the load integrations
	cycle int
}

// adminIG is what the test knows of one integration the admin goroutine
// works on, from the answers the server gave.
type adminIG struct {
	name    string
	pairs   []replicaKeyPair // acknowledged key pairs, oldest first; the last is current unless deleted
	deleted bool
	// inFlight is the change that had no answer when the server was killed
	// ("create", "regenerate", "delete"); it may or may not have happened.
	inFlight string
	tokens   []adminToken
	acked    map[int]int // acknowledged changes per cycle
}

type adminToken struct{ token, clientID string }

func (ig *adminIG) current() (replicaKeyPair, bool) {
	if ig.deleted || len(ig.pairs) == 0 {
		return replicaKeyPair{}, false
	}
	return ig.pairs[len(ig.pairs)-1], true
}

// crashWorld is everything the test has been told across crash cycles.
type crashWorld struct {
	rs         replicaKeyPair   // can_introspect
	loads      []replicaKeyPair // the load integrations
	loadNames  []string
	loadTokens []loadToken
	admin      []*adminIG // only the admin goroutine touches these during load
}

// cycleStats are the counts one crash cycle logs.
type cycleStats struct {
	loadFor                  time.Duration
	tokens, adminChanges     int
	tokenErrsAtKill          int
	inFlightAdmin            string
	tokensChecked, oldKeys   int
	adminTokensChecked       int
	adminChangesVerified     int
	integrationsChecked      int
	restart, verify, crashed time.Duration
}

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL while
// several goroutines issue tokens and one makes admin changes, restarts it
// on the same SQLite file, and checks that everything it acknowledged
// survived: every token answered 200 introspects active (or inactive when
// an acknowledged change revoked it), every acknowledged admin change is
// visible, and the file passes PRAGMA integrity_check, as the crash left it
// and after a clean stop at the end. Three cycles make it likelier that a
// kill lands in the middle of a commit.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	const (
		cycles       = 3
		tokenWorkers = 12
		minTokens    = 150 // per cycle, before the kill
		minAdmin     = 10
	)
	db := filepath.Join(t.TempDir(), "latchkey.db")
	// Failed authentications are part of the check (old secrets must be
	// refused): no rate limit, so they are answered 401, not 429.
	env := procEnv(db, "LATCHKEY_LOG_LEVEL=warn", "LATCHKEY_RATE_LIMIT_FAILURES=0")
	started := time.Now()
	latchkeyBinary(t)
	built := time.Since(started)
	p := startLatchkey(t, "latchkey#0", env)
	t.Logf("binary built in %v, server ready %v later", built.Round(time.Millisecond), (time.Since(started) - built).Round(time.Millisecond))

	w := &crashWorld{rs: createIntegration(t, p.base, map[string]any{"name": "rs", "can_introspect": true})}
	for i := range 4 {
		name := fmt.Sprintf("load-%d", i)
		w.loadNames = append(w.loadNames, name)
		// Uncapped: the load asks for thousands of tokens a second.
		w.loads = append(w.loads, createIntegration(t, p.base, map[string]any{"name": name, "token_rate_per_minute": 0}))
	}

	for cycle := range cycles {
		var st cycleStats
		st.loadFor = time.Second + rand.N(time.Second)
		killedAt := crashLoad(t, p, w, cycle, st.loadFor, tokenWorkers, minTokens, minAdmin, &st)
		for _, tk := range w.loadTokens {
			if tk.cycle == cycle {
				st.tokens++
			}
		}
		for _, ig := range w.admin {
			st.adminChanges += ig.acked[cycle]
			if ig.inFlight != "" {
				st.inFlightAdmin = ig.inFlight + " " + ig.name
			}
		}
		if st.inFlightAdmin == "" {
			st.inFlightAdmin = "no admin change"
		}
		if t.Failed() {
			t.FailNow()
		}

		sqliteCheck(t, copyCrashed(t, db), fmt.Sprintf("cycle %d: the database as the crash left it", cycle))
		st.crashed = time.Since(killedAt)

		restartAt := time.Now()
		p = startLatchkey(t, fmt.Sprintf("latchkey#%d", cycle+1), env)
		st.restart = time.Since(restartAt)
		verifyAt := time.Now()
		verifyCrash(t, p, w, cycle, &st)
		st.verify = time.Since(verifyAt)

		t.Logf("cycle %d: load %v then SIGKILL (%d token requests and %s unanswered); acknowledged %d tokens, %d admin changes; "+
			"integrity of the crashed file checked in %v; after restart (%v) verified %d load tokens active (all of this cycle, a sample of earlier ones), %d admin changes over %d integrations, %d admin-issued tokens, %d old key pairs refused (in %v)",
			cycle, st.loadFor.Round(time.Millisecond), st.tokenErrsAtKill, st.inFlightAdmin, st.tokens, st.adminChanges,
			st.crashed.Round(time.Millisecond), st.restart.Round(time.Millisecond), st.tokensChecked, st.adminChangesVerified, st.integrationsChecked,
			st.adminTokensChecked, st.oldKeys, st.verify.Round(time.Millisecond))
		if st.tokens <= 100 || st.adminChanges < minAdmin {
			t.Errorf("cycle %d acknowledged only %d tokens and %d admin changes before the kill; want > 100 and >= %d", cycle, st.tokens, st.adminChanges, minAdmin)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	stopAt := time.Now()
	p.stop(t, 30*time.Second)
	sqliteCheck(t, db, "after a clean stop")
	t.Logf("clean stop and integrity check: %v", time.Since(stopAt).Round(time.Millisecond))
}

// crashLoad runs token and admin load against p for at least loadFor (and
// until at least minTokens tokens and minAdmin admin changes are
// acknowledged), kills p with SIGKILL, and records in w every answer
// received, including those read after the kill: the server sent them.
func crashLoad(t *testing.T, p *lkProc, w *crashWorld, cycle int, loadFor time.Duration, workers, minTokens, minAdmin int, st *cycleStats) time.Time {
	t.Helper()
	ctx := t.Context()
	errs := &cappedErrors{t: t}
	var killed atomic.Bool
	var tokenCount, adminCount, errsAtKill atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup

	issued := make([][]loadToken, workers)
	for g := range workers {
		wg.Go(func() {
			i := g % len(w.loads)
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := replicaToken(ctx, p.base, w.loads[i])
				if r.err != nil {
					if killed.Load() {
						errsAtKill.Add(1)
					} else {
						errs.Errorf("cycle %d: token request failed before the kill: %v", cycle, r)
					}
					return
				}
				tok, ok := validToken(r.object())
				if r.status != http.StatusOK || !ok {
					errs.Errorf("cycle %d: token request: %v", cycle, r)
					return
				}
				issued[g] = append(issued[g], loadToken{tok, i, cycle})
				tokenCount.Add(1)
			}
		})
	}

	wg.Go(func() { adminLoad(ctx, p.base, w, cycle, stop, &killed, &adminCount, errs) })

	start := time.Now()
	for {
		enough := time.Since(start) >= loadFor && tokenCount.Load() >= int64(minTokens) && adminCount.Load() >= int64(minAdmin)
		if enough || time.Since(start) > 10*time.Second || p.exited() || errs.n.Load() > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.exited() {
		t.Fatalf("the server exited by itself under load: %v\n%s", p.state, tail(p.stderr.String()))
	}
	killed.Store(true)
	killedAt := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	if !p.waitExit(10 * time.Second) {
		t.Fatal("the server did not die within 10s of SIGKILL")
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the server exited with %v before the kill\n%s", p.state, tail(p.stderr.String()))
	}
	close(stop)
	wg.Wait()
	replicaHTTP.CloseIdleConnections()
	for _, is := range issued {
		w.loadTokens = append(w.loadTokens, is...)
	}
	st.tokenErrsAtKill = int(errsAtKill.Load())
	return killedAt
}

// adminLoad makes admin changes one after another until stop or until a
// change gets no answer (the server is dead; that change is in flight),
// and records each acknowledged change and its result in w. After each
// new key pair it issues one token with it, which must stay active exactly
// as long as the pair stays current.
func adminLoad(ctx context.Context, base string, w *crashWorld, cycle int, stop <-chan struct{}, killed *atomic.Bool, count *atomic.Int64, errs *cappedErrors) {
	fail := func(ig *adminIG, r replicaResp) {
		if r.err == nil || !killed.Load() {
			errs.Errorf("cycle %d: %s %s: %v", cycle, ig.inFlight, ig.name, r)
		}
	}
	ack := func(ig *adminIG) {
		ig.inFlight = ""
		ig.acked[cycle]++
		count.Add(1)
	}
	// issue gets a token with the new pair and reports whether the server
	// still answers.
	issue := func(ig *adminIG, kp replicaKeyPair) bool {
		r := replicaToken(ctx, base, kp)
		if r.err != nil {
			if !killed.Load() {
				errs.Errorf("cycle %d: token for %s: %v", cycle, ig.name, r)
			}
			return false
		}
		tok, ok := validToken(r.object())
		if r.status != http.StatusOK || !ok {
			errs.Errorf("cycle %d: token for %s: %v", cycle, ig.name, r)
			return false
		}
		ig.tokens = append(ig.tokens, adminToken{tok, kp.id})
		return true
	}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		var live []*adminIG
		for _, ig := range w.admin {
			if _, ok := ig.current(); ok && ig.inFlight == "" {
				live = append(live, ig)
			}
		}
		op := "create"
		switch n := rand.IntN(10); {
		case len(live) < 2:
		case len(live) >= 6 || n >= 3:
			op = "regenerate"
			if n >= 7 {
				op = "delete"
			}
		}
		switch op {
		case "create":
			ig := &adminIG{name: fmt.Sprintf("adm-%d-%d", cycle, seq), inFlight: op, acked: map[int]int{}}
			w.admin = append(w.admin, ig)
			r := replicaAdmin(ctx, base, procBootstrap, "POST", "/admin/integrations", map[string]any{"name": ig.name})
			kp, ok := parseKeyPair(r.object()["key_pair"])
			if r.err != nil || r.status != http.StatusCreated || !ok {
				fail(ig, r)
				return
			}
			ig.pairs = append(ig.pairs, kp)
			ack(ig)
			if !issue(ig, kp) {
				return
			}
		case "regenerate":
			ig := live[rand.IntN(len(live))]
			ig.inFlight = op
			r := replicaAdmin(ctx, base, procBootstrap, "POST", "/admin/integrations/"+ig.name+"/key-pair", nil)
			kp, ok := parseKeyPair(r.object())
			if r.err != nil || r.status != http.StatusCreated || !ok {
				fail(ig, r)
				return
			}
			ig.pairs = append(ig.pairs, kp)
			ack(ig)
			if !issue(ig, kp) {
				return
			}
		case "delete":
			ig := live[rand.IntN(len(live))]
			ig.inFlight = op
			r := replicaAdmin(ctx, base, procBootstrap, "DELETE", "/admin/integrations/"+ig.name, nil)
			if r.err != nil || r.status != http.StatusNoContent {
				fail(ig, r)
				return
			}
			ig.deleted = true
			ack(ig)
		}
	}
}

// earlierSample is about how many tokens from earlier cycles verifyCrash
// checks again.
const earlierSample = 500

// verifyCrash checks, against the restarted server, everything w records.
func verifyCrash(t *testing.T, p *lkProc, w *crashWorld, cycle int, st *cycleStats) {
	t.Helper()
	ctx := t.Context()
	errs := &cappedErrors{t: t}

	// The change in flight at the kill happened or did not; either is
	// right. Accept both, then delete the integration so its state is
	// known again for the next cycles.
	var known []*adminIG
	for _, ig := range w.admin {
		if ig.inFlight == "" {
			known = append(known, ig)
			continue
		}
		r := replicaAdmin(ctx, p.base, procBootstrap, "GET", "/admin/integrations/"+ig.name, nil)
		switch {
		case r.status == http.StatusNotFound && (ig.inFlight == "create" || ig.inFlight == "delete"):
		case r.status == http.StatusOK && ig.inFlight == "regenerate":
			// Before or after the regeneration: the current pair is the
			// last acknowledged one or one we were never told.
		case r.status == http.StatusOK && ig.inFlight == "delete":
			// Not deleted: then nothing changed.
			if kp, _ := r.object()["key_pair"].(map[string]any); kp["client_id"] != ig.pairs[len(ig.pairs)-1].id {
				errs.Errorf("cycle %d: %s survived an unanswered delete with key pair %v, want %s", cycle, ig.name, kp, ig.pairs[len(ig.pairs)-1].id)
			}
		case r.status == http.StatusOK && ig.inFlight == "create":
		default:
			errs.Errorf("cycle %d: %s was in flight for %s at the kill; GET now: %v", cycle, ig.inFlight, ig.name, r)
		}
		if r := replicaAdmin(ctx, p.base, procBootstrap, "DELETE", "/admin/integrations/"+ig.name, nil); r.status != http.StatusNoContent && r.status != http.StatusNotFound {
			errs.Errorf("cycle %d: deleting %s after an unanswered %s: %v", cycle, ig.name, ig.inFlight, r)
		}
		ig.inFlight, ig.deleted = "", true
		// Its tokens are checked as revoked from the next cycle on.
	}

	// Every token acknowledged in this cycle, and a sample of those from
	// earlier cycles (all checked after their own crash), which a later
	// crash must not lose either.
	var recheck []int
	var earlier int
	for _, tk := range w.loadTokens {
		if tk.cycle < cycle {
			earlier++
		}
	}
	stride := max(1, earlier/earlierSample)
	offset := rand.IntN(stride)
	for i, tk := range w.loadTokens {
		if tk.cycle == cycle || i%stride == offset {
			recheck = append(recheck, i)
		}
	}
	var checked, oldKeys, adminTokens atomic.Int64
	forEachParallel(len(recheck), 8, func(j int) {
		i := recheck[j]
		tk := w.loadTokens[i]
		if err := checkIntrospect(ctx, p.base, w.rs, tk.token, true, w.loads[tk.ig].id, w.loadNames[tk.ig]); err != nil {
			errs.Errorf("cycle %d: load token %d (acknowledged in cycle %d): %v", cycle, i, tk.cycle, err)
		}
		checked.Add(1)
	})
	forEachParallel(len(known), 8, func(i int) {
		ig := known[i]
		cur, live := ig.current()
		r := replicaAdmin(ctx, p.base, procBootstrap, "GET", "/admin/integrations/"+ig.name, nil)
		if !live {
			if r.status != http.StatusNotFound {
				errs.Errorf("cycle %d: %s was deleted, GET now: %v", cycle, ig.name, r)
			}
		} else {
			kp, _ := r.object()["key_pair"].(map[string]any)
			if r.status != http.StatusOK || kp["client_id"] != cur.id {
				errs.Errorf("cycle %d: %s: GET now: %v, want current client_id %s", cycle, ig.name, r, cur.id)
			}
			if r := replicaToken(ctx, p.base, cur); r.status != http.StatusOK {
				errs.Errorf("cycle %d: %s: token with the current pair: %v", cycle, ig.name, r)
			}
		}
		for _, old := range ig.pairs {
			if live && old == cur {
				continue
			}
			r := replicaToken(ctx, p.base, old)
			if r.status != http.StatusUnauthorized || r.object()["error"] != "invalid_client" {
				errs.Errorf("cycle %d: %s: token with a revoked pair %s: %v, want 401 invalid_client", cycle, ig.name, old.id, r)
			}
			oldKeys.Add(1)
		}
		for _, tk := range ig.tokens {
			active := live && tk.clientID == cur.id
			if err := checkIntrospect(ctx, p.base, w.rs, tk.token, active, tk.clientID, ig.name); err != nil {
				errs.Errorf("cycle %d: %s: token of pair %s: %v", cycle, ig.name, tk.clientID, err)
			}
			adminTokens.Add(1)
		}
	})
	for _, ig := range known {
		st.adminChangesVerified += ig.acked[cycle]
	}
	st.tokensChecked = int(checked.Load())
	st.oldKeys = int(oldKeys.Load())
	st.adminTokensChecked = int(adminTokens.Load())
	st.integrationsChecked = len(w.admin)
}

// --- SIGTERM ---

// heldRequest is a token request on a connection of its own whose body is
// half sent: its handler is running, waiting for the rest.
type heldRequest struct {
	conn net.Conn
	br   *bufio.Reader
	rest string
}

// holdTokenRequest sends a token request's headers with Expect:
// 100-continue, waits for the 100 Continue (net/http sends it when the
// handler first reads the body, so the request is then in a handler, not
// in a queue), and sends half the body.
func holdTokenRequest(t *testing.T, addr string, kp replicaKeyPair) *heldRequest {
	t.Helper()
	body := "grant_type=client_credentials"
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(kp.id) + ":" + url.QueryEscape(kp.secret)))
	if _, err := fmt.Fprintf(conn, "POST /oauth2/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: %d\r\nAuthorization: Basic %s\r\nExpect: 100-continue\r\n\r\n", addr, len(body), basic); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("held request: want 100 Continue, got %v, %v", resp, err)
	}
	half := len(body) / 2
	if _, err := io.WriteString(conn, body[:half]); err != nil {
		t.Fatal(err)
	}
	return &heldRequest{conn: conn, br: br, rest: body[half:]}
}

// finish sends the rest of the body and reads the answer.
func (h *heldRequest) finish() replicaResp {
	start := time.Now()
	if _, err := io.WriteString(h.conn, h.rest); err != nil {
		return replicaResp{err: err}
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return replicaResp{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return replicaResp{status: resp.StatusCode, body: b, took: time.Since(start), err: err}
}

// waitRefused dials addr until a connection is refused, which shows the
// listener is closed, and returns when that happened. A dial that connects
// meanwhile is closed at once, so it holds up nothing.
func waitRefused(t *testing.T, addr string, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, limit)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return time.Now()
		}
		if err == nil {
			c.Close()
		} else {
			t.Logf("dial %s: %v", addr, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections %v after SIGTERM", addr, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// watchRefused dials addr until done is closed and reports how many
// connections were accepted: after the listener closed, none may be.
func watchRefused(addr string, done <-chan struct{}) (accepted, dials int) {
	for {
		select {
		case <-done:
			return accepted, dials
		case <-time.After(5 * time.Millisecond):
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		dials++
		if err == nil {
			c.Close()
			select {
			case <-done: // the port is free now; someone else may have it
			default:
				accepted++
			}
		}
	}
}

// TestSIGTERMUnderLoad sends SIGTERM to a server under token load with
// requests in flight, and checks what a deploy relies on: the requests in
// flight complete, new connections are refused at once, no answer is a 5xx,
// the process exits 0 within the shutdown timeout, and what it answered is
// stored. A request that never finishes its body cannot hold the process
// past the shutdown timeout.
func TestSIGTERMUnderLoad(t *testing.T) {
	const shutdownTimeout = 5 * time.Second
	const margin = 3 * time.Second

	t.Run("in-flight requests finish", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "latchkey.db")
		env := procEnv(db, "LATCHKEY_SHUTDOWN_TIMEOUT="+shutdownTimeout.String())
		p := startLatchkey(t, "latchkey", env)
		svc := createIntegration(t, p.base, map[string]any{"name": "svc", "token_rate_per_minute": 0}) // a load
		rs := createIntegration(t, p.base, map[string]any{"name": "rs", "can_introspect": true})
		ctx := t.Context()
		errs := &cappedErrors{t: t}

		var signaled atomic.Bool
		var issuedN, afterSignal atomic.Int64
		var endsMu sync.Mutex
		ends := map[string]int{} // how the load clients' last requests failed, after SIGTERM
		const workers = 8
		tokens := make([][]string, workers)
		var wg sync.WaitGroup
		for g := range workers {
			wg.Go(func() {
				// One keep-alive connection per worker, as a client pool.
				tr := &http.Transport{MaxIdleConnsPerHost: 1}
				defer tr.CloseIdleConnections()
				c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
				for {
					r := procToken(ctx, c, p.base, svc)
					sig := signaled.Load()
					if r.err != nil {
						if !sig {
							errs.Errorf("token request before SIGTERM: %v", r)
						}
						kind := "other"
						switch {
						case errors.Is(r.err, syscall.ECONNREFUSED):
							kind = "refused"
						case errors.Is(r.err, syscall.ECONNRESET):
							kind = "reset"
						case errors.Is(r.err, io.EOF), errors.Is(r.err, io.ErrUnexpectedEOF):
							kind = "EOF"
						}
						endsMu.Lock()
						ends[kind]++
						endsMu.Unlock()
						return
					}
					tok, ok := validToken(r.object())
					if r.status != http.StatusOK || !ok {
						errs.Errorf("token request (SIGTERM sent: %v): %v", sig, r)
						return
					}
					tokens[g] = append(tokens[g], tok)
					issuedN.Add(1)
					if sig {
						afterSignal.Add(1)
					}
				}
			})
		}
		// A health checker on a keep-alive connection of its own.
		var ready200, ready503 atomic.Int64
		var readyEnd error // how the health checker's last request ended
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
			for {
				r := procDo(ctx, c, "GET", p.base+"/readyz", nil, nil)
				sig := signaled.Load()
				switch {
				case r.err != nil:
					if !sig {
						errs.Errorf("/readyz before SIGTERM: %v", r)
					}
					readyEnd = r.err
					return
				case r.status == http.StatusOK:
					ready200.Add(1)
				case r.status == http.StatusServiceUnavailable && sig:
					ready503.Add(1)
				default:
					errs.Errorf("/readyz (SIGTERM sent: %v): %v", sig, r)
				}
			}
		})

		held := make([]*heldRequest, 3)
		for i := range held {
			held[i] = holdTokenRequest(t, p.addr, svc)
		}
		deadline := time.Now().Add(10 * time.Second)
		for issuedN.Load() < 300 && errs.n.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("only %d tokens issued in 10s", issuedN.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
		beforeSignal := issuedN.Load()

		signaled.Store(true)
		sigAt := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		refusedAt := waitRefused(t, p.addr, time.Second)
		var accepted, dials int
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			accepted, dials = watchRefused(p.addr, p.done)
		}()

		// The listener is closed: shutdown has begun. Now finish the held
		// requests.
		var heldTokens []string
		for i, h := range held {
			r := h.finish()
			tok, ok := validToken(r.object())
			if r.err != nil || r.status != http.StatusOK || !ok {
				t.Errorf("held request %d, finished after SIGTERM: %v; want 200 with a token", i, r)
				continue
			}
			heldTokens = append(heldTokens, tok)
		}
		if p.exited() && len(heldTokens) < len(held) {
			t.Errorf("the server exited with requests in flight")
		}

		if !p.waitExit(shutdownTimeout + margin - time.Since(sigAt)) {
			t.Fatalf("still running %v after SIGTERM with nothing in flight", shutdownTimeout+margin)
		}
		exitAfter := time.Since(sigAt)
		wg.Wait()
		<-watched
		if code := p.state.ExitCode(); code != 0 {
			t.Errorf("exit code after SIGTERM = %d (%v), want 0", code, p.state)
		}
		if exitAfter >= shutdownTimeout {
			t.Errorf("exited %v after SIGTERM: shutdown waited for its timeout although nothing was left in flight", exitAfter)
		}
		log := p.stderr.String()
		if strings.Contains(log, "did not finish in time") || !strings.Contains(log, "shutting down") || !strings.Contains(log, "stopped") {
			t.Errorf("shutdown log:\n%s", tail(problemLines(log)))
		}
		if accepted > 0 {
			t.Errorf("%d of %d connections were accepted after the first was refused", accepted, dials)
		}
		t.Logf("SIGTERM after %d tokens; %d more answered after it, then the clients' requests failed with %v; refused %v after SIGTERM (%d dials since, %d accepted); "+
			"held requests finished with tokens: %d/%d; exit code %d %v after SIGTERM; /readyz on a keep-alive connection: %d×200, %d×503 during the drain, then %v",
			beforeSignal, afterSignal.Load(), ends, refusedAt.Sub(sigAt).Round(time.Millisecond), dials, accepted, len(heldTokens), len(held),
			p.state.ExitCode(), exitAfter.Round(time.Millisecond), ready200.Load(), ready503.Load(), readyEnd)
		if t.Failed() {
			return
		}

		// What was answered 200, during the drain too, is stored.
		var all []string
		for _, ts := range tokens {
			all = append(all, ts...)
		}
		all = append(all, heldTokens...)
		p2 := startLatchkey(t, "latchkey (restarted)", env)
		forEachParallel(len(all), 8, func(i int) {
			if err := checkIntrospect(ctx, p2.base, rs, all[i], true, svc.id, "svc"); err != nil {
				errs.Errorf("token %d of %d after the restart: %v", i, len(all), err)
			}
		})
		if !t.Failed() {
			t.Logf("after a restart, all %d tokens answered (%d held through SIGTERM) introspect active", len(all), len(heldTokens))
		}
		p2.stop(t, shutdownTimeout+margin)
	})

	t.Run("in-flight request never finishes", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "latchkey.db")
		p := startLatchkey(t, "latchkey", procEnv(db, "LATCHKEY_SHUTDOWN_TIMEOUT="+shutdownTimeout.String()))
		svc := createIntegration(t, p.base, map[string]any{"name": "svc"})
		if r := replicaToken(t.Context(), p.base, svc); r.status != http.StatusOK {
			t.Fatalf("token: %v", r)
		}
		replicaHTTP.CloseIdleConnections()
		stuck := holdTokenRequest(t, p.addr, svc)

		sigAt := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		refusedAt := waitRefused(t, p.addr, time.Second)
		if !p.waitExit(shutdownTimeout + margin - time.Since(sigAt)) {
			t.Fatalf("still running %v after SIGTERM (shutdown timeout %v)", shutdownTimeout+margin, shutdownTimeout)
		}
		exitAfter := time.Since(sigAt)
		if exitAfter < shutdownTimeout-100*time.Millisecond {
			t.Errorf("exited %v after SIGTERM, before the shutdown timeout %v, with a request in flight", exitAfter, shutdownTimeout)
		}
		// What serve does today: Shutdown's timeout is logged, not returned
		// as an error, so the exit code is 0.
		if code := p.state.ExitCode(); code != 0 {
			t.Errorf("exit code after the shutdown timeout = %d (%v), want 0", code, p.state)
		}
		log := p.stderr.String()
		if !strings.Contains(log, "shutdown did not finish in time") {
			t.Errorf("no warning that shutdown timed out:\n%s", tail(log))
		}
		// The stuck request's connection died with the process, unanswered.
		_ = stuck.conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := stuck.finish()
		if r.err == nil {
			t.Errorf("the stuck request got an answer after the process exited: %v", r)
		}
		t.Logf("refused %v after SIGTERM; with a request stuck in its body, exited %v after SIGTERM (timeout %v) with %v; the stuck client saw: %v",
			refusedAt.Sub(sigAt).Round(time.Millisecond), exitAfter.Round(time.Millisecond), shutdownTimeout, p.state, r.err)
	})
}
