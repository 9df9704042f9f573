// Command vulngate reads govulncheck's -format json stream and fails when
// the code calls a vulnerable symbol that the accepted list does not name.
//
//	govulncheck -format json ./... | go run ./scripts/vulngate -accepted .ci/govulncheck-accepted
//
// govulncheck's own exit status cannot tell a called vulnerability that the
// project must fix from one it cannot fix by a bump (a standard-library
// finding fixed only in a Go newer than the one CI builds with). The accepted
// list names each such exception by ID and module, so that any other called
// finding, including a new one in the standard library, still fails CI.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// The parts of govulncheck's JSON protocol (golang.org/x/vuln/internal/govulncheck)
// that the gate reads.
type message struct {
	Config  *config  `json:"config"`
	OSV     *osvInfo `json:"osv"`
	Finding *finding `json:"finding"`
}

type config struct {
	ScannerVersion string `json:"scanner_version"`
	DB             string `json:"db"`
	GoVersion      string `json:"go_version"`
	ScanLevel      string `json:"scan_level"`
}

type osvInfo struct {
	ID      string `json:"id"`
	Summary string `json:"summary"`
}

type finding struct {
	OSV          string   `json:"osv"`
	FixedVersion string   `json:"fixed_version"`
	Trace        []*frame `json:"trace"`
}

type frame struct {
	Module   string    `json:"module"`
	Version  string    `json:"version"`
	Package  string    `json:"package"`
	Function string    `json:"function"`
	Receiver string    `json:"receiver"`
	Position *position `json:"position"`
}

type position struct {
	Filename string `json:"filename"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
}

// key is what an accepted line names: a vulnerability in one module. An OSV
// report can cover a module and the standard library at once; accepting the
// standard-library half must not hide the module half.
type key struct{ id, module string }

// called is one vulnerable symbol reached from the project's code, with the
// first trace govulncheck gave for it.
type called struct {
	key
	version, fixed, symbol, from string
}

type report struct {
	cfg       *config
	summaries map[string]string
	called    map[key]called
	// Reports that apply to an imported package or a required module but
	// whose symbols the code does not reach: counted, not gated.
	uncalled map[string]bool
}

func parse(r io.Reader) (*report, error) {
	rep := &report{summaries: map[string]string{}, called: map[key]called{}, uncalled: map[string]bool{}}
	dec := json.NewDecoder(r)
	for {
		var m message
		err := dec.Decode(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading govulncheck's JSON: %w", err)
		}
		switch {
		case m.Config != nil:
			rep.cfg = m.Config
		case m.OSV != nil:
			rep.summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			f := m.Finding
			top := f.Trace[0]
			if top.Function == "" {
				rep.uncalled[f.OSV] = true
				continue
			}
			k := key{f.OSV, top.Module}
			c := called{key: k, version: top.Version, fixed: f.FixedVersion, symbol: symbol(top, true)}
			if entry := f.Trace[len(f.Trace)-1]; entry.Position != nil && entry.Position.Line > 0 {
				c.from = fmt.Sprintf("%s:%d:%d %s", entry.Position.Filename, entry.Position.Line, entry.Position.Column, symbol(entry, false))
			}
			// govulncheck's order varies between runs; the smallest trace
			// keeps the output comparable from one CI run to the next.
			if prev, seen := rep.called[k]; !seen || c.from+c.symbol < prev.from+prev.symbol {
				rep.called[k] = c
			}
		}
	}
	if rep.cfg == nil {
		// An empty or cut-off stream would otherwise read as a clean scan.
		return nil, fmt.Errorf("no config message: govulncheck did not run to completion")
	}
	if rep.cfg.ScanLevel != "" && rep.cfg.ScanLevel != "symbol" {
		return nil, fmt.Errorf("scan level %q: only a symbol scan tells called vulnerabilities apart", rep.cfg.ScanLevel)
	}
	for k := range rep.called {
		delete(rep.uncalled, k.id)
	}
	return rep, nil
}

// symbol names a frame's function; the vulnerable one with its full import
// path, as a module's last path element (v3, say) is often not its name.
func symbol(f *frame, fullPath bool) string {
	name := f.Function
	if f.Receiver != "" {
		name = strings.TrimPrefix(f.Receiver, "*") + "." + name
	}
	pkg := f.Package
	if i := strings.LastIndex(pkg, "/"); i >= 0 && !fullPath {
		pkg = pkg[i+1:]
	}
	return pkg + "." + name
}

// readAccepted reads lines of "ID module [why...]"; # starts a comment.
func readAccepted(path string) (map[key]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	accepted := map[key]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "GO-") {
			return nil, fmt.Errorf("%s:%d: want \"GO-YYYY-NNNN module [why]\"", path, n)
		}
		accepted[key{fields[0], fields[1]}] = strings.Join(fields[2:], " ")
	}
	return accepted, sc.Err()
}

// gate writes the verdict to w and reports whether every called
// vulnerability is accepted.
func gate(w io.Writer, rep *report, accepted map[key]string) bool {
	fmt.Fprintf(w, "govulncheck %s, Go %s, database %s\n", rep.cfg.ScannerVersion, rep.cfg.GoVersion, rep.cfg.DB)
	keys := make([]key, 0, len(rep.called))
	for k := range rep.called {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].id != keys[j].id {
			return keys[i].id < keys[j].id
		}
		return keys[i].module < keys[j].module
	})
	failed := 0
	for _, k := range keys {
		c := rep.called[k]
		verdict := "CALLED  "
		if _, ok := accepted[k]; ok {
			verdict = "accepted"
		} else {
			failed++
		}
		fixed := "fixed in " + c.fixed
		if c.fixed == "" {
			fixed = "no fix yet"
		}
		fmt.Fprintf(w, "%s %s %s@%s (%s): %s\n", verdict, k.id, k.module, c.version, fixed, rep.summaries[k.id])
		fmt.Fprintf(w, "         %s, reached from %s\n", c.symbol, c.from)
	}
	var stale []string
	for k := range accepted {
		if _, ok := rep.called[k]; !ok {
			stale = append(stale, k.id+" "+k.module)
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		fmt.Fprintf(w, "no longer reported, can leave the accepted list: %s\n", s)
	}
	fmt.Fprintf(w, "called vulnerabilities: %d, of which accepted %d; %d more in imported code that is not called\n",
		len(keys), len(keys)-failed, len(rep.uncalled))
	if failed > 0 {
		fmt.Fprintf(w, "vulngate: %d called vulnerabilities are not accepted: bump the module, or fix the call\n", failed)
		return false
	}
	return true
}

func main() {
	acceptedPath := flag.String("accepted", "", "file of accepted called vulnerabilities (\"GO-YYYY-NNNN module why\" lines)")
	flag.Parse()
	accepted := map[key]string{}
	if *acceptedPath != "" {
		var err error
		if accepted, err = readAccepted(*acceptedPath); err != nil {
			fmt.Fprintln(os.Stderr, "vulngate:", err)
			os.Exit(2)
		}
	}
	rep, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if !gate(os.Stdout, rep, accepted) {
		os.Exit(1)
	}
}
