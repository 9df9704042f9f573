package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEListsEverySetting keeps the README's configuration table and
// the settings table the same set of keys, so a setting added in one place
// is documented and a removed one leaves no stale row.
func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "| key | default | meaning |\n| --- | --- | --- |\n")
	if !ok {
		t.Fatal("README's Configuration section has no key | default | meaning table")
	}
	table, _, _ := strings.Cut(rest, "\n\n")
	key := regexp.MustCompile("`([a-z_]+)`")
	var documented []string
	for _, row := range strings.Split(table, "\n") {
		first := strings.SplitN(row, "|", 3)[1]
		for _, m := range key.FindAllStringSubmatch(first, -1) {
			documented = append(documented, m[1])
		}
	}
	var keys []string
	for _, s := range settings() {
		keys = append(keys, s.key)
		if !slices.Contains(documented, s.key) {
			t.Errorf("setting %q has no row in README's configuration table", s.key)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("README's configuration table documents %q, which is no setting", k)
		}
	}
}
