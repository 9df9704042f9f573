package storage

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryPermission keeps the README's table of permissions
// the table in permissions.go, row for row: what each grants and which
// roles hold it.
func TestREADMEListsEveryPermission(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n### Roles and permissions\n")
	if !ok {
		t.Fatal("README has no Roles and permissions section")
	}
	header := "| permission | grants |"
	for _, r := range Roles {
		header += " " + string(r) + " |"
	}
	_, rest, ok = strings.Cut(rest, header+"\n")
	if !ok {
		t.Fatalf("README's Roles and permissions section has no %q table", header)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the separator row
	table, _, _ := strings.Cut(rest, "\n\n")
	var got []string
	for _, row := range strings.Split(table, "\n") {
		got = append(got, strings.Join(strings.Fields(row), " "))
	}
	var want []string
	for _, p := range Permissions {
		row := fmt.Sprintf("| `%s` | %s |", p.Permission, p.Grants)
		for _, r := range Roles {
			mark := " |"
			for _, holder := range p.Roles {
				if holder == r {
					mark = " ✓ |"
				}
			}
			row += mark
		}
		want = append(want, strings.Join(strings.Fields(row), " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's permission table:\n%s\nwant, from permissions.go:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
