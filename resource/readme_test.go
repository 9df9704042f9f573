package resource_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEQuotesTheExample keeps README's "Protecting an API in Go" the
// example go test runs, not a copy that drifts from it.
func TestREADMEQuotesTheExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Protecting an API in Go\n")
	if !ok {
		t.Fatal("README.md has no section Protecting an API in Go")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(src), "\nfunc Example() {")
	if !ok {
		t.Fatal("example_test.go has no Example")
	}
	example = "func Example() {" + example
	if !strings.Contains(section, "```go\n"+example+"```\n") {
		t.Errorf("README.md's Go block is not resource/example_test.go's Example; quote it again:\n%s", example)
	}
}
