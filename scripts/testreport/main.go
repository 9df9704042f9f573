// Command testreport reads `go test -json` on stdin and prints what plain
// `go test` prints (a line per package, the output of failing tests), then
// what was skipped and why, which plain `go test` hides unless run with -v:
// a suite that skipped its PostgreSQL half must not look like one that ran
// it. It exits 1 when anything failed.
//
//	go test -race -json ./... | go run ./scripts/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// event is one line of test2json's output (go doc test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// skipReason is the message of a t.Skip line: its file:line prefix goes, so
// that the skips of one cause group together.
var skipReason = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)

func report(in io.Reader, out io.Writer) (failed bool, err error) {
	type key struct{ pkg, test string }
	output := map[key][]string{} // output of tests still running
	skips := map[string]map[string]int{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line) // not test2json: the go command's own words
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output", "build-output":
			output[k] = append(output[k], e.Output)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		case "skip":
			if e.Test == "" {
				fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
			} else {
				reason := "no reason given"
				for _, o := range output[k] {
					if m := skipReason.FindStringSubmatch(strings.TrimRight(o, "\n")); m != nil {
						reason = m[1]
					}
				}
				if skips[reason] == nil {
					skips[reason] = map[string]int{}
				}
				skips[reason][e.Package]++
			}
			delete(output, k)
		case "fail", "build-fail":
			failed = true
			for _, o := range output[k] {
				fmt.Fprint(out, o)
			}
			delete(output, k)
			if e.Test == "" {
				// A crashed test binary may leave tests that never
				// reported: their output is the crash.
				for other, o := range output {
					if other.pkg == e.Package {
						fmt.Fprint(out, strings.Join(o, ""))
						delete(output, other)
					}
				}
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	printSkips(out, skips)
	return failed, nil
}

func printSkips(out io.Writer, skips map[string]map[string]int) {
	if len(skips) == 0 {
		return
	}
	total := 0
	reasons := make([]string, 0, len(skips))
	for r, byPkg := range skips {
		reasons = append(reasons, r)
		for _, n := range byPkg {
			total += n
		}
	}
	count := func(r string) (n int) {
		for _, c := range skips[r] {
			n += c
		}
		return n
	}
	slices.SortFunc(reasons, func(a, b string) int { return count(b) - count(a) })
	fmt.Fprintf(out, "\nSKIPPED %d tests:\n", total)
	for _, r := range reasons {
		pkgs := make([]string, 0, len(skips[r]))
		for p, n := range skips[r] {
			pkgs = append(pkgs, fmt.Sprintf("%s %d", strings.TrimPrefix(p, "github.com/latchkey/latchkey/"), n))
		}
		slices.Sort(pkgs)
		fmt.Fprintf(out, "%5d  %s\n       (%s)\n", count(r), r, strings.Join(pkgs, ", "))
	}
}
