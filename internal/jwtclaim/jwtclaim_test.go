package jwtclaim

import (
	"encoding/json"
	"testing"
	"time"
)

func TestNumericDate(t *testing.T) {
	tests := []struct {
		in   json.Number
		want time.Time
		ok   bool
	}{
		{"1767225600", time.Unix(1767225600, 0), true},
		{"1767225600.5", time.Unix(1767225600, 5e8), true},
		{"-1", time.Unix(-1, 0), true},
		{"", time.Time{}, false},
		{"1e300", time.Time{}, false},
		{"9223372036854775808", time.Time{}, false}, // past int64, and far past any date
		{"NaN", time.Time{}, false},
		{"soon", time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := NumericDate(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("NumericDate(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
