package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/latchkey/latchkey/config"
)

// TestDockerCompose checks the container deployment — Dockerfile,
// .dockerignore, docker-compose.yml and deploy/nginx.conf — on a machine
// without a Docker engine. What only reading can check is read. The rest is
// run: the binary is built by the Dockerfile's own go build line from the
// files .dockerignore lets into the build context, and the compose services
// run as processes with the compose's commands and environment, against the
// test PostgreSQL, behind nginx with deploy/nginx.conf when nginx is
// installed.
func TestDockerCompose(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	df := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	build := df.buildStage(t)
	final := df.stages[len(df.stages)-1]
	imageBinary := df.binaryPath(t)

	// What a person would put into .env; LATCHKEY_ISSUER stays unset so
	// that its default applies, as in the documented quick start.
	vars := map[string]string{
		"LATCHKEY_SECRET":          rand.Text() + rand.Text(),
		"LATCHKEY_BOOTSTRAP_TOKEN": rand.Text() + rand.Text(),
	}
	composePath := filepath.Join(root, "docker-compose.yml")
	cf, err := loadCompose(composePath, vars)
	if err != nil {
		t.Fatal(err)
	}
	svc := func(t *testing.T, name string) composeService {
		t.Helper()
		s, ok := cf.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no service %q", name)
		}
		return s
	}
	nginxConfPath := filepath.Join(root, "deploy", "nginx.conf")
	nginxConf, err := os.ReadFile(nginxConfPath)
	if err != nil {
		t.Fatal(err)
	}
	lb := parseNginx(string(nginxConf))
	// nginx's fixed address on the compose network, and the loopback
	// address it sends from here (proxy_bind) in its place; clients connect
	// from another, clientAddr.
	nginxAddr, nginxNet := cf.Services["nginx"].ipv4Address()
	const nginxLocal, clientAddr = "127.0.0.3", "127.0.0.2"

	t.Run("dockerfile", func(t *testing.T) {
		if len(df.stages) < 2 {
			t.Fatalf("Dockerfile has %d stage(s); want a build stage and a small runtime stage", len(df.stages))
		}
		if final == build || strings.HasPrefix(final.image, "golang:") {
			t.Fatal("the final stage is a Go image: the image would carry the toolchain")
		}
		// The golang image pins the toolchain (GOTOOLCHAIN=local), so its Go
		// must be the release go.mod asks for.
		goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
		if m == nil {
			t.Fatal("go.mod has no go directive")
		}
		if want := "golang:" + string(m[1]) + "-"; !strings.HasPrefix(build.image, want) {
			t.Errorf("build stage FROM %s; want %s… for go.mod's go %s", build.image, want, m[1])
		}
		if env := build.env(len(build.ins)); env["CGO_ENABLED"] != "1" {
			t.Errorf("build stage CGO_ENABLED = %q; the SQLite driver needs 1", env["CGO_ENABLED"])
		}
		// A cgo binary needs the glibc it was linked against, or a newer one.
		if !sameDebian(build.image, final.image) {
			t.Errorf("runtime FROM %s does not carry the glibc of the build stage's %s", final.image, build.image)
		}
		// Modules are downloaded in a layer of their own, before the sources
		// come in, so a source change does not download them again.
		dl := build.find("RUN", "go mod download")
		all := build.find("COPY", ". ")
		if mods := build.find("COPY", "go.mod go.sum"); mods < 0 || dl < mods || all < dl {
			t.Error("build stage: want COPY go.mod go.sum, RUN go mod download, then COPY . .")
		}

		user := final.last("USER")
		if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
			t.Errorf("final stage USER = %q; want a non-root user", user)
		}
		entry := final.execForm(t, "ENTRYPOINT")
		if len(entry) == 0 || entry[0] != imageBinary {
			t.Errorf("ENTRYPOINT %q does not run %s, where the binary is copied", entry, imageBinary)
		}
		if cmd := final.execForm(t, "CMD"); !slices.Equal(cmd, []string{"serve"}) {
			t.Errorf("CMD = %q; want [serve]", cmd)
		}
		if !slices.Contains(strings.Fields(final.all("EXPOSE")), "8080") {
			t.Error("final stage does not EXPOSE 8080, latchkey's default listen port")
		}
		// The default database, sqlite://latchkey.db, is relative: it lands in
		// WORKDIR, which the non-root user must own to create it.
		workdir := final.last("WORKDIR")
		owned := false
		for _, in := range final.ins {
			f := strings.Fields(in.args)
			if in.cmd == "COPY" && len(f) > 0 && path.Clean(f[len(f)-1]) == path.Clean(workdir) && in.flag("chown") == user {
				owned = true
			}
		}
		if workdir == "" || workdir == "/" || !owned {
			t.Errorf("final stage WORKDIR %q is not a directory copied in with --chown=%s", workdir, user)
		}
		for k := range final.env(len(final.ins)) {
			if strings.HasPrefix(k, "LATCHKEY_") {
				t.Errorf("the image sets %s; configuration belongs to the deployment", k)
			}
		}
	})

	t.Run("dockerignore", func(t *testing.T) {
		ig := readDockerignore(t, root)
		for _, p := range []string{".git/config", ".env", "latchkey.db", "cmd/latchkey/latchkey.db",
			"latchkey.db-wal", "latchkey.secret", "deep/dir/latchkey.secret", "latchkey"} {
			if !ig.excluded(p) {
				t.Errorf(".dockerignore lets %s into the build context", p)
			}
		}
		for _, p := range []string{"go.mod", "go.sum", "cmd/latchkey/main.go", "storage/migrations/README.md"} {
			if ig.excluded(p) {
				t.Errorf(".dockerignore keeps %s, which the build needs, out of the build context", p)
			}
		}
	})

	t.Run("compose", func(t *testing.T) {
		pg := svc(t, "postgres")
		if !strings.HasPrefix(pg.Image, "postgres:") {
			t.Errorf("postgres image = %q", pg.Image)
		}
		// The postgres image keeps its data in PGDATA, /var/lib/postgresql/data
		// up to version 17; a named volume there outlives the container.
		vol, ok := pg.volumeAt("/var/lib/postgresql/data")
		if !ok || vol.bind {
			t.Errorf("postgres has no named volume on /var/lib/postgresql/data: %v", pg.Volumes)
		} else if _, declared := cf.Volumes[vol.source]; !declared {
			t.Errorf("volume %q is not declared under the top-level volumes", vol.source)
		}
		pgEnv := pg.env(vars)
		check := healthcheckArgs(pg)
		if len(check) == 0 || check[0] != "pg_isready" {
			t.Errorf("postgres healthcheck %q does not run pg_isready", check)
		}
		for flag, want := range map[string]string{"-U": pgEnv["POSTGRES_USER"], "-d": pgEnv["POSTGRES_DB"]} {
			if i := slices.Index(check, flag); i >= 0 && (i+1 >= len(check) || check[i+1] != want) {
				t.Errorf("pg_isready %s is not %q", flag, want)
			}
		}
		// Over TCP: during initialisation the image runs a socket-only server
		// that pg_isready on the socket would report ready.
		if i := slices.Index(check, "-h"); i < 0 || i+1 >= len(check) || strings.HasPrefix(check[i+1], "/") {
			t.Errorf("pg_isready %q does not check over TCP (-h 127.0.0.1)", check)
		}

		migrate := svc(t, "migrate")
		replicas := cf.replicas()
		if len(replicas) < 2 {
			t.Fatalf("compose runs %d replica(s) with command serve; want at least 2", len(replicas))
		}
		for _, name := range append([]string{"migrate"}, replicas...) {
			s := svc(t, name)
			ctx, dockerfile := s.build()
			if filepath.Join(root, ctx) != root || dockerfile != "Dockerfile" {
				t.Errorf("%s builds %s from %s; want this repository's Dockerfile", name, dockerfile, ctx)
			}
			if s.Image != "" {
				t.Errorf("%s names image %q: compose would pull it instead of building when it exists", name, s.Image)
			}
		}
		if got := migrate.command(); !slices.Equal(got, []string{"migrate"}) {
			t.Errorf("migrate command = %q", got)
		}
		if d := migrate.dependsOn()["postgres"]; d.condition != "service_healthy" {
			t.Errorf("migrate depends on postgres with condition %q; want service_healthy", d.condition)
		}
		// A one-shot that restarts never completes, and the replicas wait
		// for it to complete.
		if migrate.Restart != "" && migrate.Restart != "no" {
			t.Errorf("migrate restart = %q; a one-shot must not restart", migrate.Restart)
		}

		migrateEnv := migrate.env(vars)
		for _, name := range replicas {
			s := svc(t, name)
			if d := s.dependsOn()["migrate"]; d.condition != "service_completed_successfully" {
				t.Errorf("%s depends on migrate with condition %q; want service_completed_successfully", name, d.condition)
			}
			// Replicas verify each other's hashes and share sealed signing
			// keys: one secret, one database, one issuer.
			if env := s.env(vars); !maps.Equal(env, migrateEnv) {
				t.Errorf("%s environment differs from migrate's:\n%v\n%v", name, env, migrateEnv)
			}
			grace, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil || grace <= config.Default().ShutdownTimeout {
				t.Errorf("%s stop_grace_period %q; want more than latchkey's %s shutdown", name, s.StopGracePeriod, config.Default().ShutdownTimeout)
			}
		}

		dsn, err := url.Parse(migrateEnv["LATCHKEY_DATABASE"])
		if err != nil {
			t.Fatalf("LATCHKEY_DATABASE: %v", err)
		}
		pass, _ := dsn.User.Password()
		if dsn.User.Username() != pgEnv["POSTGRES_USER"] || pass != pgEnv["POSTGRES_PASSWORD"] ||
			strings.TrimPrefix(dsn.Path, "/") != pgEnv["POSTGRES_DB"] {
			t.Errorf("LATCHKEY_DATABASE %s does not name the user, password and database of the postgres service %v", dsn.Redacted(), pgEnv)
		}
		if dsn.Hostname() != "postgres" || dsn.Port() != "5432" {
			t.Errorf("LATCHKEY_DATABASE host %s; want the postgres service, postgres:5432", dsn.Host)
		}
		// Everything but the database host is validated by the processes
		// below; this validates the compose's database URL as latchkey reads it.
		cfg, _, err := config.Load("serve", nil, composeGetenv(migrateEnv), io.Discard)
		if err != nil {
			t.Fatalf("latchkey rejects the compose environment: %v", err)
		}
		if cfg.DatabaseDriver() != "postgres" || cfg.LogFormat != "json" {
			t.Errorf("compose environment gives database driver %q, log format %q", cfg.DatabaseDriver(), cfg.LogFormat)
		}
		// Every container listens on latchkey's default port: nothing overrides
		// it, the image exposes it and nginx sends traffic to it.
		if cfg.Listen != ":8080" {
			t.Errorf("replicas listen on %q; nginx and EXPOSE expect :8080", cfg.Listen)
		}
		for _, r := range replicas {
			if slices.ContainsFunc(svc(t, r).command(), func(a string) bool { return strings.HasPrefix(a, "--listen") }) {
				t.Errorf("%s command %q moves the listener off :8080", r, svc(t, r).command())
			}
		}

		nginx := svc(t, "nginx")
		if !strings.HasPrefix(nginx.Image, "nginx:") {
			t.Errorf("nginx image = %q", nginx.Image)
		}
		composeMount, ok := nginx.volumeAt("/etc/nginx/nginx.conf")
		if !ok || !composeMount.bind || filepath.Join(root, composeMount.source) != nginxConfPath || !composeMount.readOnly {
			t.Errorf("nginx does not mount deploy/nginx.conf read-only on /etc/nginx/nginx.conf: %+v", composeMount)
		}
		var want []string
		for _, r := range replicas {
			want = append(want, r+":8080")
		}
		if !slices.Equal(lb.servers, want) {
			t.Errorf("nginx upstream servers %q; want every replica, %q", lb.servers, want)
		}
		for _, r := range replicas {
			if d, ok := nginx.dependsOn()[r]; !ok || !d.restart {
				t.Errorf("nginx does not depend on %s with restart: true; it would keep a recreated replica's old address", r)
			}
		}
		if !lb.proxiesToUpstream {
			t.Error("nginx.conf has no proxy_pass to its upstream")
		}
		if f := strings.Fields(lb.nextUpstream); !slices.Contains(f, "error") || !slices.Contains(f, "timeout") || slices.Contains(f, "non_idempotent") {
			t.Errorf("proxy_next_upstream %q; want error and timeout, and never non_idempotent (a POST must not run twice)", lb.nextUpstream)
		}
		for h, v := range map[string]string{"X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Forwarded-Proto": "$scheme"} {
			if lb.headers[h] != v {
				t.Errorf("nginx sets %s to %q; want %s", h, lb.headers[h], v)
			}
		}
		// The replicas believe X-Forwarded-For from nginx, and only from
		// nginx: the replicas and postgres share its network, and the
		// Docker host reaches that network through the gateway, so
		// trusting more would let them forge a client's address.
		subnet, err := cf.subnet(nginxNet)
		switch {
		case nginxAddr == "":
			t.Error("nginx has no fixed ipv4_address on the compose network for LATCHKEY_TRUSTED_PROXIES to name")
		case err != nil:
			t.Errorf("nginx's network %q: %v", nginxNet, err)
		case !subnet.Contains(netip.MustParseAddr(nginxAddr)):
			t.Errorf("nginx's address %s is outside its network's subnet %s", nginxAddr, subnet)
		}
		if proxies, err := cfg.ProxyNets(); err != nil || len(proxies) != 1 || proxies[0].String() != nginxAddr+"/32" {
			t.Errorf("LATCHKEY_TRUSTED_PROXIES %q (%v); want exactly nginx's address %s", migrateEnv["LATCHKEY_TRUSTED_PROXIES"], err, nginxAddr)
		}
		published := nginx.publishedPort(lb.listen)
		if published == "" {
			t.Errorf("nginx publishes no host port for its listen port %s: %v", lb.listen, nginx.Ports)
		}
		// Tokens carry the issuer; clients reach it through nginx.
		iss, err := url.Parse(cfg.Issuer)
		if err != nil || iss.Port() != published {
			t.Errorf("default issuer %s is not on nginx's published port %s", cfg.Issuer, published)
		}
		for _, r := range replicas {
			if len(svc(t, r).Ports) > 0 {
				t.Errorf("%s publishes ports; clients must go through nginx", r)
			}
		}
	})

	t.Run("secret required", func(t *testing.T) {
		// With PostgreSQL every replica must be given the same secret, so
		// compose must refuse to start rather than let each make up its own.
		_, err := loadCompose(composePath, map[string]string{"LATCHKEY_BOOTSTRAP_TOKEN": vars["LATCHKEY_BOOTSTRAP_TOKEN"]})
		if err == nil || !strings.Contains(err.Error(), "LATCHKEY_SECRET") {
			t.Fatalf("compose without LATCHKEY_SECRET: err = %v; want a refusal naming it", err)
		}
	})

	var binary string
	binDir := t.TempDir() // the subtest's own would go when it ends
	t.Run("build", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: the image's binary is not built")
		}
		binary = buildLikeDockerfile(t, root, df, binDir)
		// Dynamically linked (cgo) means the runtime image must ship glibc.
		f, err := elf.Open(binary)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
			t.Error("the binary is static: CGO_ENABLED=1 did not reach the build")
		}
	})

	t.Run("replicas", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: the services are not run")
		}
		if binary == "" {
			t.Fatal("no binary: the build failed")
		}
		dsn := postgresDSN(t)
		ctx := t.Context()
		// The environment a container gets: the image's ENV, then the
		// compose's, changed only where this machine differs from the
		// compose network.
		containerEnv := func(name string, listen bool) []string {
			env := final.env(len(final.ins))
			for k, v := range svc(t, name).env(vars) {
				env[k] = v
			}
			env["LATCHKEY_DATABASE"] = dsn
			if v, ok := env["LATCHKEY_TRUSTED_PROXIES"]; ok && nginxAddr != "" {
				env["LATCHKEY_TRUSTED_PROXIES"] = strings.ReplaceAll(v, nginxAddr, nginxLocal)
			}
			if listen {
				// Every container listens on :8080; here they share one host.
				env["LATCHKEY_LISTEN"] = "127.0.0.1:0"
			}
			var out []string
			for k, v := range env {
				out = append(out, k+"="+v)
			}
			return out
		}
		argv := func(name string) []string {
			s := svc(t, name)
			entry, cmd := s.entrypoint(), s.command()
			if entry == nil {
				entry = final.execForm(t, "ENTRYPOINT")
				if cmd == nil {
					cmd = final.execForm(t, "CMD")
				}
			}
			if len(entry) == 0 || entry[0] != imageBinary {
				t.Fatalf("%s runs %q, not the image's %s", name, entry, imageBinary)
			}
			return append([]string{binary}, append(entry[1:], cmd...)...)
		}

		for i, want := range []string{"applied migrations", "up to date"} {
			// Twice: every `docker compose up` runs the one-shot again.
			// Each container has its own WORKDIR.
			p := startComposeProc(t, ctx, "migrate", argv("migrate"), containerEnv("migrate", false), t.TempDir())
			if err := p.wait(time.Minute); err != nil {
				t.Fatalf("migrate run %d: %v\nstdout: %s\nstderr: %s", i+1, err, p.stdout.String(), p.stderr.String())
			}
			if !strings.Contains(p.stdout.String(), want) {
				t.Fatalf("migrate run %d printed %q; want %q", i+1, p.stdout.String(), want)
			}
		}

		// Both at once, as compose starts them once migrate has completed.
		replicas := cf.replicas()
		if len(replicas) < 2 {
			t.Fatalf("compose has %d replica(s)", len(replicas))
		}
		procs := make([]*composeProc, len(replicas))
		for i, name := range replicas {
			procs[i] = startComposeProc(t, ctx, name, argv(name), containerEnv(name, true), t.TempDir())
		}
		bases := make([]string, len(procs))
		for i, p := range procs {
			bases[i] = p.waitReady(t, 30*time.Second)
		}
		a, b := bases[0], bases[1]
		boot := vars["LATCHKEY_BOOTSTRAP_TOKEN"]
		issuer := svc(t, replicas[0]).env(vars)["LATCHKEY_ISSUER"]
		var newID, newSecret string

		t.Run("drive", func(t *testing.T) {
			for i, base := range bases {
				var meta map[string]any
				if code := composeCall(t, "GET", base+"/.well-known/oauth-authorization-server", nil, nil, &meta); code != 200 || meta["issuer"] != issuer {
					t.Fatalf("%s metadata: %d issuer %v; want the compose's %s", replicas[i], code, meta["issuer"], issuer)
				}
			}

			var client, rs map[string]any
			if code := composeAdminPost(t, a, boot, "/admin/integrations", map[string]any{"name": "compose-client", "scopes": []string{"reports:read"}}, &client); code != 201 {
				t.Fatalf("create integration on %s: %d %v", replicas[0], code, client)
			}
			if code := composeAdminPost(t, b, boot, "/admin/integrations", map[string]any{"name": "compose-rs", "can_introspect": true}, &rs); code != 201 {
				t.Fatalf("create resource server on %s: %d %v", replicas[1], code, rs)
			}
			id, secret := composeKeyPair(t, client)
			rsID, rsSecret := composeKeyPair(t, rs)

			var tok map[string]any
			if code := composeToken(t, b, id, secret, &tok); code != 200 {
				t.Fatalf("token on %s with a pair made on %s: %d %v", replicas[1], replicas[0], code, tok)
			}
			access, _ := tok["access_token"].(string)
			var in map[string]any
			if code := composeIntrospect(t, a, rsID, rsSecret, access, &in); code != 200 || in["active"] != true || in["sub"] != "compose-client" || in["iss"] != issuer {
				t.Fatalf("introspect on %s of a token from %s: %d %v", replicas[0], replicas[1], code, in)
			}

			var fresh map[string]any
			if code := composeAdminPost(t, b, boot, "/admin/integrations/compose-client/key-pair", nil, &fresh); code != 201 {
				t.Fatalf("regenerate on %s: %d %v", replicas[1], code, fresh)
			}
			newID, _ = fresh["client_id"].(string)
			newSecret, _ = fresh["client_secret"].(string)
			// The contract: a regeneration is visible on every replica
			// within a second.
			deadline := time.Now().Add(time.Second)
			for {
				var old, after map[string]any
				oldCode := composeToken(t, a, id, secret, &old)
				composeIntrospect(t, a, rsID, rsSecret, access, &after)
				if oldCode == 401 && old["error"] == "invalid_client" && after["active"] == false {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("1 s after regenerating on %s, %s still answers the old pair %d %v and its token %v", replicas[1], replicas[0], oldCode, old, after)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if code := composeToken(t, a, newID, newSecret, &tok); code != 200 {
				t.Fatalf("token on %s with the new pair: %d %v", replicas[0], code, tok)
			}

			for i, p := range procs {
				for line := range strings.Lines(p.stderr.String()) {
					if strings.TrimSpace(line) != "" && !json.Valid([]byte(line)) {
						t.Errorf("%s logged a line that is not JSON (LATCHKEY_LOG_FORMAT=json): %q", replicas[i], line)
					}
				}
			}
		})
		if t.Failed() {
			return
		}

		t.Run("nginx", func(t *testing.T) {
			nginxBin, err := exec.LookPath("nginx")
			if err != nil {
				t.Skip("nginx is not installed (apt-get install nginx-light): the load balancer is not run")
			}
			dir, err := os.MkdirTemp("", "latchkey-nginx-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			upstreams := map[string]string{}
			for i, r := range replicas {
				upstreams[r+":8080"] = strings.TrimPrefix(bases[i], "http://")
			}
			port := freeLoopbackPort(t)
			conf, err := rewriteNginx(string(nginxConf), upstreams, "127.0.0.1:"+port, nginxLocal, dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			ng := startComposeProc(t, t.Context(), "nginx", []string{nginxBin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"}, os.Environ(), dir)
			lbURL := "http://127.0.0.1:" + port
			waitForProc(t, ng, 10*time.Second, func() bool {
				return composeCall(t, "GET", lbURL+"/healthz", nil, nil, nil) == 200
			})

			// Round robin: a series of token requests reaches every replica.
			const n = 8
			before := make([]int, len(procs))
			for i, p := range procs {
				before[i] = p.tokenRequests()
			}
			for range n {
				var tok map[string]any
				if code := composeToken(t, lbURL, newID, newSecret, &tok); code != 200 {
					t.Fatalf("token through nginx: %d %v\nnginx: %s", code, tok, ng.stderr.String())
				}
			}
			served := make([]int, len(procs))
			waitForProc(t, ng, 5*time.Second, func() bool {
				sum := 0
				for i, p := range procs {
					served[i] = p.tokenRequests() - before[i]
					sum += served[i]
				}
				return sum == n
			})
			t.Logf("token requests through nginx per replica: %v", served)
			for i, s := range served {
				if s == 0 {
					t.Errorf("%s served none of %d token requests through nginx (served: %v)\nnginx log: %s", replicas[i], n, served, ng.stdout.String())
				}
			}

			// Behind nginx, a client is seen by its own address, in the
			// access log and the audit log, whichever replica answers, even
			// when it sends an X-Forwarded-For of its own.
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientAddr)}}).DialContext,
			}}
			defer client.CloseIdleConnections()
			behind := func(method, p, auth, contentType string, body []byte, out any) (int, string) {
				t.Helper()
				req, err := http.NewRequestWithContext(t.Context(), method, lbURL+p, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				id := "compose-" + rand.Text()
				req.Header.Set("X-Request-ID", id)
				req.Header.Set("X-Forwarded-For", "203.0.113.9")
				req.Header.Set("Authorization", auth)
				if contentType != "" {
					req.Header.Set("Content-Type", contentType)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s from %s through nginx: %v", method, p, clientAddr, err)
				}
				defer resp.Body.Close()
				if out != nil {
					if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
						t.Fatalf("%s %s through nginx: %d, not JSON: %v", method, p, resp.StatusCode, err)
					}
				}
				return resp.StatusCode, id
			}
			for range len(procs) {
				code, id := behind("POST", "/oauth2/token", "Basic "+base64.StdEncoding.EncodeToString([]byte(newID+":"+newSecret)),
					"application/x-www-form-urlencoded", []byte("grant_type=client_credentials"), nil)
				if code != 200 {
					t.Errorf("token from %s through nginx: %d", clientAddr, code)
				}
				var remote string
				waitForProc(t, ng, 5*time.Second, func() bool {
					for _, p := range procs {
						if remote = p.requestRemote(id); remote != "" {
							return true
						}
					}
					return false
				})
				if remote != clientAddr {
					t.Errorf("a replica logged the request from %s through nginx (%s) as remote %q; want the client's own address", clientAddr, nginxLocal, remote)
				}
			}
			body, _ := json.Marshal(map[string]any{"name": "compose-behind-nginx"})
			if code, _ := behind("POST", "/admin/integrations", "Bearer "+boot, "application/json", body, nil); code != 201 {
				t.Fatalf("create integration through nginx: %d", code)
			}
			var audit struct {
				Items []struct {
					Action     string `json:"action"`
					RemoteAddr string `json:"remote_addr"`
				} `json:"items"`
			}
			if code, _ := behind("GET", "/admin/audit?integration=compose-behind-nginx", "Bearer "+boot, "", nil, &audit); code != 200 || len(audit.Items) == 0 {
				t.Fatalf("audit through nginx: %d %+v", code, audit)
			}
			for _, e := range audit.Items {
				if e.RemoteAddr != clientAddr {
					t.Errorf("audit event %s has remote_addr %q; want the client's own address %s", e.Action, e.RemoteAddr, clientAddr)
				}
			}

			// A replica going away (docker stop) costs no request: nginx
			// sends the next ones to the other.
			if err := procs[1].stop(); err != nil {
				t.Fatalf("%s on SIGTERM: %v; want a clean exit\n%s", replicas[1], err, procs[1].stderr.String())
			}
			rest := slices.Delete(slices.Clone(procs), 1, 2)
			countRest := func() int {
				sum := 0
				for _, p := range rest {
					sum += p.tokenRequests()
				}
				return sum
			}
			before0 := countRest()
			for range n {
				var tok map[string]any
				if code := composeToken(t, lbURL, newID, newSecret, &tok); code != 200 {
					t.Fatalf("token through nginx with %s stopped: %d %v\nnginx: %s", replicas[1], code, tok, ng.stderr.String())
				}
			}
			waitForProc(t, ng, 5*time.Second, func() bool { return countRest()-before0 == n })
		})
	})
}

// --- Dockerfile ---

type dockerInstruction struct {
	cmd   string   // upper case: FROM, RUN, COPY…
	flags []string // --from=build, --chown=…, --mount=…
	args  string   // the rest, continuation lines joined
}

// flag returns the value of --name=value, or "".
func (in dockerInstruction) flag(name string) string {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

type dockerStage struct {
	image, name string
	ins         []dockerInstruction
}

type dockerfile struct{ stages []*dockerStage }

// parseDockerfile reads the instructions the tests need: comments and
// parser directives are dropped, continuation lines joined, and each
// instruction's --flags split off its arguments.
func parseDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{}
	var joined []string
	var cur strings.Builder
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		joined = append(joined, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		joined = append(joined, cur.String())
	}
	flagRe := regexp.MustCompile(`^(--\S+)\s+`)
	for _, line := range joined {
		cmd, args, _ := strings.Cut(line, " ")
		in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		for {
			m := flagRe.FindStringSubmatch(in.args)
			if m == nil {
				break
			}
			in.flags = append(in.flags, m[1])
			in.args = strings.TrimSpace(in.args[len(m[0]):])
		}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := &dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			continue // ARG before the first FROM only parameterises FROM lines
		}
		st := df.stages[len(df.stages)-1]
		st.ins = append(st.ins, in)
	}
	if len(df.stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	return df
}

// find returns the index of the first instruction cmd whose arguments
// start with prefix (or contain it, for RUN), or -1.
func (s *dockerStage) find(cmd, prefix string) int {
	for i, in := range s.ins {
		if in.cmd != cmd {
			continue
		}
		if (cmd == "RUN" && strings.Contains(in.args, prefix)) || strings.HasPrefix(in.args, prefix) {
			return i
		}
	}
	return -1
}

func (s *dockerStage) last(cmd string) string {
	v := ""
	for _, in := range s.ins {
		if in.cmd == cmd {
			v = in.args
		}
	}
	return v
}

func (s *dockerStage) all(cmd string) string {
	var v []string
	for _, in := range s.ins {
		if in.cmd == cmd {
			v = append(v, in.args)
		}
	}
	return strings.Join(v, " ")
}

// execForm returns the stage's last ENTRYPOINT or CMD; exec form is
// required, since the shell form would need a shell the image lacks.
func (s *dockerStage) execForm(t *testing.T, cmd string) []string {
	t.Helper()
	raw := s.last(cmd)
	if raw == "" {
		return nil
	}
	var out []string
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("%s %s is not in exec form (a JSON array): %v", cmd, raw, err)
	}
	return out
}

// env returns the ARG defaults and ENV values in force before instruction
// i, as a RUN there sees them.
func (s *dockerStage) env(i int) map[string]string {
	env := map[string]string{}
	for _, in := range s.ins[:i] {
		if in.cmd != "ENV" && in.cmd != "ARG" {
			continue
		}
		words := dockerShellWords(in.args)
		if in.cmd == "ENV" && len(words) > 0 && !strings.Contains(words[0], "=") {
			env[words[0]] = strings.Join(words[1:], " ") // legacy ENV KEY value
			continue
		}
		for _, w := range words {
			if k, v, ok := strings.Cut(w, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// dockerShellWords splits s on blanks, honouring quotes and backslashes.
func dockerShellWords(s string) []string {
	var out []string
	var w strings.Builder
	inWord := false
	var quote rune
	for i := 0; i < len(s); i++ {
		c := rune(s[i])
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, inWord = c, true
		case c == '\\' && quote != '\'' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out
}

// buildStage is the stage whose RUN has the go build command line.
func (df *dockerfile) buildStage(t *testing.T) *dockerStage {
	t.Helper()
	for _, s := range df.stages {
		if s.find("RUN", "go build") >= 0 {
			return s
		}
	}
	t.Fatal("no stage of the Dockerfile runs go build")
	return nil
}

var goBuildOutput = regexp.MustCompile(`(\s-o[\s=]+)(\S+)`)

// binaryPath follows the binary from go build's -o to where the final
// stage copies it, and returns that path in the image.
func (df *dockerfile) binaryPath(t *testing.T) string {
	t.Helper()
	build := df.buildStage(t)
	run := build.ins[build.find("RUN", "go build")].args
	m := goBuildOutput.FindStringSubmatch(run)
	if m == nil {
		t.Fatalf("go build line %q has no -o", run)
	}
	out := m[2]
	final := df.stages[len(df.stages)-1]
	for _, in := range final.ins {
		f := strings.Fields(in.args)
		from := in.flag("from")
		if in.cmd == "COPY" && (from == build.name || from == fmt.Sprint(slices.Index(df.stages, build))) && len(f) == 2 && f[0] == out {
			return f[1]
		}
	}
	t.Fatalf("the final stage does not COPY --from=%s %s", build.name, out)
	return ""
}

// buildLikeDockerfile runs the build stage's go build line, with the
// stage's ARG and ENV values, in a copy of the build context that
// .dockerignore filters, as `COPY . .` would give it; only the output path
// changes, to outDir.
func buildLikeDockerfile(t *testing.T, root string, df *dockerfile, outDir string) string {
	t.Helper()
	build := df.buildStage(t)
	i := build.find("RUN", "go build")
	copyAll := build.find("COPY", ". ")
	if f := strings.Fields(build.ins[max(copyAll, 0)].args); copyAll < 0 || copyAll > i ||
		len(f) != 2 || (f[1] != "." && f[1] != "./" && path.Clean(f[1]) != path.Clean(build.last("WORKDIR"))) {
		t.Fatal("the build stage does not COPY . into its WORKDIR before go build; the command line would not run at the context root")
	}
	ctxDir := t.TempDir()
	copyContext(t, root, ctxDir, readDockerignore(t, root))

	out := filepath.Join(outDir, "latchkey")
	line := goBuildOutput.ReplaceAllString(build.ins[i].args, "${1}'"+out+"'")
	env := os.Environ()
	for k, v := range build.env(i) {
		env = append(env, k+"="+v)
	}
	cmd := exec.CommandContext(t.Context(), "sh", "-c", line)
	cmd.Dir = ctxDir
	cmd.Env = env
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	t.Logf("built in %s: %s", time.Since(start).Round(time.Second), line)
	return out
}

// sameDebian tells whether two image references name the same Debian
// release (golang:…-bookworm and distroless …-debian12, say).
func sameDebian(a, b string) bool {
	release := func(ref string) string {
		for _, r := range []struct{ codename, version string }{
			{"bullseye", "11"}, {"bookworm", "12"}, {"trixie", "13"},
		} {
			if strings.Contains(ref, r.codename) || strings.Contains(ref, "debian"+r.version) {
				return r.version
			}
		}
		return ""
	}
	return release(a) != "" && release(a) == release(b)
}

// --- .dockerignore ---

type dockerignorePattern struct {
	re      *regexp.Regexp
	exclude bool
}

type dockerignore []dockerignorePattern

// readDockerignore compiles .dockerignore the way Docker reads it: paths
// relative to the context root, * and ? within one path element, ** across
// elements, ! re-includes, the last match wins, and a pattern matching a
// directory matches everything in it.
func readDockerignore(t *testing.T, root string) dockerignore {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var ig dockerignore
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := dockerignorePattern{exclude: true}
		if s, ok := strings.CutPrefix(line, "!"); ok {
			line, p.exclude = s, false
		}
		line = strings.TrimPrefix(path.Clean(line), "/")
		var re strings.Builder
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString(`(.*/)?`)
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(`.*`)
				i++
			case c == '*':
				re.WriteString(`[^/]*`)
			case c == '?':
				re.WriteString(`[^/]`)
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		p.re = regexp.MustCompile(`^` + re.String() + `(/.*)?$`)
		ig = append(ig, p)
	}
	return ig
}

func (ig dockerignore) excluded(rel string) bool {
	out := false
	for _, p := range ig {
		if p.re.MatchString(rel) {
			out = p.exclude
		}
	}
	return out
}

// copyContext copies the files of root that ig lets into the build context.
func copyContext(t *testing.T, root, dst string, ig dockerignore) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ig.excluded(rel) {
			if d.IsDir() && !slices.ContainsFunc(ig, func(p dockerignorePattern) bool { return !p.exclude }) {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
}

// --- docker-compose.yml ---

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

// subnet returns the one subnet the compose fixes for network.
func (cf *composeFile) subnet(network string) (netip.Prefix, error) {
	n, ok := cf.Networks[network]
	if !ok || len(n.IPAM.Config) != 1 {
		return netip.Prefix{}, errors.New("has no fixed subnet (ipam config with one subnet)")
	}
	return netip.ParsePrefix(n.IPAM.Config[0].Subnet)
}

type composeService struct {
	Image       string `yaml:"image"`
	Build       any    `yaml:"build"`
	Entrypoint  any    `yaml:"entrypoint"`
	Command     any    `yaml:"command"`
	Environment any    `yaml:"environment"`
	DependsOn   any    `yaml:"depends_on"`
	Healthcheck struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
	Networks        any    `yaml:"networks"`
	Volumes         []any  `yaml:"volumes"`
	Ports           []any  `yaml:"ports"`
	Restart         string `yaml:"restart"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

// loadCompose reads a compose file as compose does: variables in values are
// interpolated from vars (standing for the shell and .env), then anchors and
// merge keys are resolved.
func loadCompose(path string, vars map[string]string) (*composeFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	if err := composeInterpolateNode(&doc, lookup); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cf composeFile
	if err := doc.Decode(&cf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cf, nil
}

// composeInterpolateNode interpolates every scalar value (not mapping keys); an
// anchored node is visited once, where it is defined, so its aliases see
// the result.
func composeInterpolateNode(n *yaml.Node, lookup func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := composeInterpolateNode(c, lookup); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := composeInterpolateNode(n.Content[i], lookup); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		v, err := composeInterpolate(n.Value, lookup)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		n.Value = v
	}
	return nil
}

// composeInterpolate expands $$, $VAR, ${VAR} and the ${VAR:-default},
// ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt} and ${VAR+alt}
// forms as compose does.
func composeInterpolate(s string, lookup func(string) (string, bool)) (string, error) {
	isName := func(c byte, first bool) bool {
		return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (!first && '0' <= c && c <= '9')
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			b.WriteByte('$')
			i++
		case i+1 < len(s) && s[i+1] == '{':
			depth, end := 0, -1
			for j := i + 1; j < len(s) && end < 0; j++ {
				switch s[j] {
				case '{':
					depth++
				case '}':
					if depth--; depth == 0 {
						end = j
					}
				}
			}
			if end < 0 {
				return "", fmt.Errorf("invalid interpolation format in %q", s)
			}
			expr := s[i+2 : end]
			n := 0
			for n < len(expr) && isName(expr[n], n == 0) {
				n++
			}
			name, rest := expr[:n], expr[n:]
			if name == "" {
				return "", fmt.Errorf("invalid interpolation format in %q", s)
			}
			val, set := lookup(name)
			nonEmpty := set && val != ""
			op := ""
			for _, o := range []string{":-", ":?", ":+", "-", "?", "+"} {
				if strings.HasPrefix(rest, o) {
					op = o
					break
				}
			}
			if op == "" && rest != "" {
				return "", fmt.Errorf("invalid interpolation format in %q", s)
			}
			arg := strings.TrimPrefix(rest, op)
			ok := set
			if strings.HasPrefix(op, ":") {
				ok = nonEmpty
			}
			switch strings.TrimPrefix(op, ":") {
			case "-":
				if !ok {
					v, err := composeInterpolate(arg, lookup)
					if err != nil {
						return "", err
					}
					val = v
				}
			case "?":
				if !ok {
					return "", fmt.Errorf("required variable %s is missing a value: %s", name, arg)
				}
			case "+":
				val = ""
				if ok {
					v, err := composeInterpolate(arg, lookup)
					if err != nil {
						return "", err
					}
					val = v
				}
			}
			b.WriteString(val)
			i = end
		case i+1 < len(s) && isName(s[i+1], true):
			j := i + 1
			for j < len(s) && isName(s[j], false) {
				j++
			}
			v, _ := lookup(s[i+1 : j])
			b.WriteString(v)
			i = j - 1
		default:
			return "", fmt.Errorf("invalid interpolation format in %q: use $$ for a literal $", s)
		}
	}
	return b.String(), nil
}

// replicas names the services that run `serve`, in order.
func (cf *composeFile) replicas() []string {
	var out []string
	for name, s := range cf.Services {
		if slices.Equal(s.command(), []string{"serve"}) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func composeList(v any) []string {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			out[i] = fmt.Sprint(e)
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func (s composeService) command() []string    { return composeList(s.Command) }
func (s composeService) entrypoint() []string { return composeList(s.Entrypoint) }

// build returns the build context and Dockerfile, relative to the compose
// file.
func (s composeService) build() (dir, file string) {
	switch b := s.Build.(type) {
	case string:
		return b, "Dockerfile"
	case map[string]any:
		dir, _ = b["context"].(string)
		file, _ = b["dockerfile"].(string)
		if file == "" {
			file = "Dockerfile"
		}
		return dir, file
	}
	return "", ""
}

// env returns the service's environment; an entry without a value takes
// it from vars, as compose takes it from the shell.
func (s composeService) env(vars map[string]string) map[string]string {
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			if v == nil {
				if sv, ok := vars[k]; ok {
					out[k] = sv
				}
				continue
			}
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, ok := strings.Cut(fmt.Sprint(kv), "=")
			if !ok {
				if sv, set := vars[k]; set {
					out[k] = sv
				}
				continue
			}
			out[k] = v
		}
	}
	return out
}

type composeDependency struct {
	condition string
	restart   bool
}

func (s composeService) dependsOn() map[string]composeDependency {
	out := map[string]composeDependency{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, name := range d {
			out[fmt.Sprint(name)] = composeDependency{condition: "service_started"}
		}
	case map[string]any:
		for name, v := range d {
			dep := composeDependency{condition: "service_started"}
			if m, ok := v.(map[string]any); ok {
				if c, ok := m["condition"].(string); ok {
					dep.condition = c
				}
				dep.restart, _ = m["restart"].(bool)
			}
			out[name] = dep
		}
	}
	return out
}

// ipv4Address returns the service's fixed address and the network it is
// on, or "" when it has none; a service named on no network is on the
// default one.
func (s composeService) ipv4Address() (addr, network string) {
	nets, _ := s.Networks.(map[string]any)
	for name, v := range nets {
		if m, ok := v.(map[string]any); ok {
			if a, ok := m["ipv4_address"].(string); ok {
				return a, name
			}
		}
	}
	return "", "default"
}

// healthcheckArgs returns the healthcheck's command line.
func healthcheckArgs(s composeService) []string {
	test := composeList(s.Healthcheck.Test)
	switch {
	case len(test) > 0 && test[0] == "CMD":
		return test[1:]
	case len(test) > 1 && test[0] == "CMD-SHELL":
		return strings.Fields(strings.Join(test[1:], " "))
	}
	return test
}

type composeMount struct {
	source, target string
	bind, readOnly bool
}

// volumeAt returns the mount on target, short or long syntax.
func (s composeService) volumeAt(target string) (composeMount, bool) {
	for _, v := range s.Volumes {
		var m composeMount
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				continue
			}
			m = composeMount{source: parts[0], target: parts[1]}
			m.readOnly = len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
			m.bind = strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") || strings.HasPrefix(m.source, "~")
		case map[string]any:
			m.source, _ = v["source"].(string)
			m.target, _ = v["target"].(string)
			m.readOnly, _ = v["read_only"].(bool)
			m.bind = v["type"] == "bind"
		}
		if m.target == target {
			return m, true
		}
	}
	return composeMount{}, false
}

// publishedPort returns the host port published for container port, or "".
func (s composeService) publishedPort(container string) string {
	for _, p := range s.Ports {
		switch p := p.(type) {
		case string:
			parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
			if len(parts) >= 2 && parts[len(parts)-1] == container {
				return parts[len(parts)-2]
			}
		case map[string]any:
			if fmt.Sprint(p["target"]) == container {
				return fmt.Sprint(p["published"])
			}
		}
	}
	return ""
}

func composeGetenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// --- nginx.conf ---

type nginxSettings struct {
	servers           []string // upstream server addresses, in order
	proxiesToUpstream bool
	listen            string
	nextUpstream      string
	headers           map[string]string // proxy_set_header
}

// nginxWithoutComments drops # comments, so that a commented-out directive is
// not taken for a live one.
func nginxWithoutComments(conf string) string {
	var b strings.Builder
	for line := range strings.Lines(conf) {
		code, _, hasComment := strings.Cut(line, "#")
		b.WriteString(code)
		if hasComment {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func parseNginx(raw string) nginxSettings {
	conf := nginxWithoutComments(raw)
	c := nginxSettings{headers: map[string]string{}}
	if m := regexp.MustCompile(`upstream\s+(\S+)\s*\{([^}]*)\}`).FindStringSubmatch(conf); m != nil {
		for _, s := range regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(m[2], -1) {
			c.servers = append(c.servers, s[1])
		}
		c.proxiesToUpstream = regexp.MustCompile(`proxy_pass\s+http://` + regexp.QuoteMeta(m[1]) + `\s*;`).MatchString(conf)
	}
	if m := regexp.MustCompile(`(?m)^\s*listen\s+([^\s;]+)`).FindStringSubmatch(conf); m != nil {
		c.listen = m[1]
	}
	if m := regexp.MustCompile(`proxy_next_upstream\s+([^;]*);`).FindStringSubmatch(conf); m != nil {
		c.nextUpstream = m[1]
	}
	for _, m := range regexp.MustCompile(`proxy_set_header\s+(\S+)\s+([^;]*);`).FindAllStringSubmatch(conf, -1) {
		c.headers[m[1]] = strings.TrimSpace(m[2])
	}
	return c
}

// rewriteNginx adapts the compose's nginx.conf to this machine, and only
// where it must: the replicas' addresses, the listen address, the address
// nginx connects to the replicas from (its own on the compose network,
// bind here), and the pid file and temporary directories, which default to
// system paths.
func rewriteNginx(raw string, upstreams map[string]string, listen, bind, dir string) (string, error) {
	conf := raw
	for from, to := range upstreams {
		re := regexp.MustCompile(`(?m)^(\s*server\s+)` + regexp.QuoteMeta(from) + `\b`)
		if n := len(re.FindAllString(nginxWithoutComments(conf), -1)); n != 1 {
			return "", fmt.Errorf("nginx.conf names upstream %s %d times; want once", from, n)
		}
		conf = re.ReplaceAllString(conf, "${1}"+to)
	}
	listenRe := regexp.MustCompile(`(?m)^(\s*listen\s+)[^\s;]+`)
	if n := len(listenRe.FindAllString(nginxWithoutComments(conf), -1)); n != 1 {
		return "", fmt.Errorf("nginx.conf has %d listen directives; want one", n)
	}
	conf = listenRe.ReplaceAllString(conf, "${1}"+listen)
	if regexp.MustCompile(`(?m)^\s*(pid|\w+_temp_path|proxy_bind)\s`).MatchString(nginxWithoutComments(conf)) {
		return "", errors.New("nginx.conf sets a pid, temp path or proxy_bind; teach rewriteNginx to replace it")
	}
	httpRe := regexp.MustCompile(`(?m)^http\s*\{`)
	if !httpRe.MatchString(conf) {
		return "", errors.New("nginx.conf has no top-level http block")
	}
	temp := ""
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		temp += fmt.Sprintf("\n    %s_temp_path %s;", d, filepath.Join(dir, d))
	}
	temp += fmt.Sprintf("\n    proxy_bind %s;", bind)
	conf = httpRe.ReplaceAllLiteralString(conf, "http {"+temp)
	return fmt.Sprintf("pid %s;\n", filepath.Join(dir, "nginx.pid")) + conf, nil
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// --- processes ---

// composeProc is one service running as a process of the test.
type composeProc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error
}

// startComposeProc starts argv; the process is stopped like `docker stop` stops a
// container (SIGTERM, then SIGKILL) when ctx ends and in t.Cleanup.
func startComposeProc(t *testing.T, ctx context.Context, name string, argv, env []string, dir string) *composeProc {
	t.Helper()
	p := &composeProc{name: name, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Dir = dir
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = config.Default().ShutdownTimeout + 5*time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil && ctx.Err() == nil {
			t.Logf("%s exited with %v\nstderr: %s", name, err, p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM, kills the process if it has not exited within the
// shutdown timeout, and returns how it exited.
func (p *composeProc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(config.Default().ShutdownTimeout + 5*time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// wait waits for the process to exit by itself.
func (p *composeProc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.name, timeout)
	}
}

// waitReady waits for `latchkey serve` to print its address and answer
// /readyz 200, and returns its base URL.
func (p *composeProc) waitReady(t *testing.T, timeout time.Duration) string {
	t.Helper()
	var base string
	waitForProc(t, p, timeout, func() bool {
		if m := listening.FindStringSubmatch(p.stdout.String()); m != nil {
			base = "http://" + m[1]
			return composeCall(t, "GET", base+"/readyz", nil, nil, nil) == 200
		}
		return false
	})
	return base
}

// waitForProc polls cond until it holds, failing if p exits first or timeout
// passes.
func waitForProc(t *testing.T, p *composeProc, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\nstdout: %s\nstderr: %s", p.name, p.err, p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not met within %s\nstdout: %s\nstderr: %s", p.name, timeout, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// tokenRequests counts the token requests the replica has logged.
func (p *composeProc) tokenRequests() int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		var l struct{ Msg, Path string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && l.Path == "/oauth2/token" {
			n++
		}
	}
	return n
}

// requestRemote returns the remote address the replica logged for the
// request with X-Request-ID id, or "" when it logged none.
func (p *composeProc) requestRemote(id string) string {
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		var l struct {
			Msg       string
			RequestID string `json:"request_id"`
			Remote    string
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && l.RequestID == id {
			return l.Remote
		}
	}
	return ""
}

// --- HTTP ---

var composeHTTP = &http.Client{Timeout: 10 * time.Second}

// composeCall sends one request and decodes a JSON answer into out (when not
// nil); it returns the status, or 0 when the request failed.
func composeCall(t *testing.T, method, u string, header http.Header, body []byte, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if header != nil {
		req.Header = header
	}
	resp, err := composeHTTP.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Errorf("%s %s: %d, not JSON: %q", method, u, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

func composeAdminPost(t *testing.T, base, token, p string, body any, out any) int {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	h := http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}}
	return composeCall(t, "POST", base+p, h, b, out)
}

func composeFormPost(t *testing.T, u, id, secret string, form url.Values, out any) int {
	t.Helper()
	h := http.Header{
		"Content-Type":  {"application/x-www-form-urlencoded"},
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))},
	}
	return composeCall(t, "POST", u, h, []byte(form.Encode()), out)
}

func composeToken(t *testing.T, base, id, secret string, out any) int {
	t.Helper()
	return composeFormPost(t, base+"/oauth2/token", id, secret, url.Values{"grant_type": {"client_credentials"}}, out)
}

func composeIntrospect(t *testing.T, base, id, secret, token string, out any) int {
	t.Helper()
	return composeFormPost(t, base+"/oauth2/introspect", id, secret, url.Values{"token": {token}}, out)
}

func composeKeyPair(t *testing.T, integration map[string]any) (id, secret string) {
	t.Helper()
	kp, _ := integration["key_pair"].(map[string]any)
	id, _ = kp["client_id"].(string)
	secret, _ = kp["client_secret"].(string)
	if id == "" || secret == "" {
		t.Fatalf("integration has no key pair: %v", integration)
	}
	return id, secret
}
