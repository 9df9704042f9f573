package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScratchSetting(t *testing.T) {
	if d := Default().ReadHeaderTimeout; d != 5*time.Second {
		t.Fatalf("default %v", d)
	}
	c, _, err := Load("serve", []string{"--read-header-timeout", "7s"}, nil, io.Discard)
	if err != nil || c.ReadHeaderTimeout != 7*time.Second {
		t.Fatalf("flag %v %v", c, err)
	}
	c, _, err = Load("serve", nil, func(k string) string {
		if k == "LATCHKEY_READ_HEADER_TIMEOUT" {
			return "8s"
		}
		return ""
	}, io.Discard)
	if err != nil || c.ReadHeaderTimeout != 8*time.Second {
		t.Fatalf("env %v %v", c, err)
	}
	p := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(p, []byte("read_header_timeout: 9s\n"), 0o600)
	c, _, err = Load("serve", []string{"--config", p}, nil, io.Discard)
	if err != nil || c.ReadHeaderTimeout != 9*time.Second {
		t.Fatalf("file %v %v", c, err)
	}
	_, _, err = Load("serve", []string{"--read-header-timeout", "2m"}, nil, io.Discard)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), `read_header_timeout: "2m" is not valid; accepted values: a Go duration between 1s and 1m`) {
		t.Fatalf("range %v", err)
	}
	d := Default()
	d.ReadHeaderTimeout = 0
	t.Log(d.Validate())
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "read_header_timeout") {
		t.Fatalf("validate %v", err)
	}
	var help strings.Builder
	Load("serve", []string{"-h"}, nil, &help)
	if !strings.Contains(help.String(), "-read-header-timeout duration") || !strings.Contains(help.String(), "LATCHKEY_READ_HEADER_TIMEOUT) (default 5s)") {
		t.Fatal(help.String())
	}
}
