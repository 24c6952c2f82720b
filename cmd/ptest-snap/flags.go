package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pypj/ptest-snap/core"
)

// parseKV parses repeated key=value flags into a map. flag names the flag
// in error messages.
func parseKV(cmd *cobra.Command, flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef(cmd, "--%s %q: expected key=value", flag, p)
		}
		if _, dup := m[k]; dup {
			return nil, usagef(cmd, "--%s: key %q given twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// parseAge parses a duration that may use days, weeks and years as well
// as Go's units: "30d", "2w", "36h", "1d12h", "90m" (core.ParseAge, so the
// CLI and the core agree on what an age is).
func parseAge(s string) (time.Duration, error) {
	d, err := core.ParseAge(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 30d, 2w, 12h, 1d6h)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// parseWhen parses a point in time for --since and --until: RFC 3339
// ("2026-11-28T09:00:00Z"), a date ("2026-11-28", local midnight), a date
// and time ("2026-11-28 09:00", local), or an age before now ("2h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := parseAge(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use 2026-11-28, \"2026-11-28 09:00\", RFC 3339, or an age like 2h or 7d", s)
}
