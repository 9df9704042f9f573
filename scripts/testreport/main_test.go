package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"p/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"pass","Package":"p/a","Test":"TestOK","Elapsed":0.1}`,
		`{"Action":"output","Package":"p/a","Test":"TestPG","Output":"    pg_test.go:12: LATCHKEY_TEST_POSTGRES_DSN is not set\n"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestPG"}`,
		`{"Action":"output","Package":"p/b","Test":"TestPG2","Output":"    other_test.go:40: LATCHKEY_TEST_POSTGRES_DSN is not set\n"}`,
		`{"Action":"skip","Package":"p/b","Test":"TestPG2"}`,
		`{"Action":"skip","Package":"p/b","Test":"TestSilent"}`,
		`{"Action":"pass","Package":"p/a","Elapsed":1.5}`,
		`{"Action":"output","Package":"p/b","Test":"TestBad","Output":"    b_test.go:7: want 2, got 3\n"}`,
		`{"Action":"fail","Package":"p/b","Test":"TestBad"}`,
		`{"Action":"output","Package":"p/b","Test":"TestCrash","Output":"panic: boom\n"}`,
		`{"Action":"fail","Package":"p/b","Elapsed":2}`,
		`# p/c`,
		`{"Action":"skip","Package":"p/d"}`,
	}, "\n")
	var out strings.Builder
	failed, err := report(strings.NewReader(in), &out)
	if err != nil || !failed {
		t.Fatalf("report = %v, %v; want failed", failed, err)
	}
	got := out.String()
	for _, want := range []string{
		"ok  \tp/a\t1.500s\n",
		"want 2, got 3",
		"panic: boom",
		"FAIL\tp/b\t2.000s\n",
		"# p/c\n",
		"?   \tp/d\t[no test files]\n",
		"SKIPPED 3 tests:\n",
		"    2  LATCHKEY_TEST_POSTGRES_DSN is not set\n       (p/a 1, p/b 1)\n",
		"    1  no reason given\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q; it printed:\n%s", want, got)
		}
	}
	if strings.Contains(got, "=== RUN") {
		t.Errorf("report printed a passing test's output:\n%s", got)
	}
	failed, err = report(strings.NewReader(`{"Action":"pass","Package":"p/a","Elapsed":1}`), &out)
	if failed || err != nil {
		t.Errorf("all passing: report = %v, %v; want not failed", failed, err)
	}
}
