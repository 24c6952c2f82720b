package core

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// DefaultCleanupAge is the age past which Cleanup removes snapshots when no
// rule is given: the original report's "older than N days, default 30".
const DefaultCleanupAge = 30 * 24 * time.Hour

// Unlimited, as a keep-* count, keeps one snapshot in every bucket (every
// snapshot for KeepLast), like restic's -1.
const Unlimited = -1

// ErrEmptyPolicy is returned by RetentionPolicy.Apply when the policy has no
// rule at all: applying it would remove every snapshot, which is never what
// was meant. Cleanup substitutes DefaultCleanupAge instead.
var ErrEmptyPolicy = errors.New("retention policy has no rule")

// RetentionPolicy says which snapshots of each environment to keep, like
// restic's forget: a snapshot is kept when at least one rule keeps it and
// removed otherwise. Rules apply per group (engine + env ID), newest first.
type RetentionPolicy struct {
	// KeepLast keeps the N newest snapshots.
	KeepLast int
	// KeepHourly, KeepDaily, KeepWeekly, KeepMonthly and KeepYearly keep
	// the newest snapshot of each of the last N hours, days, ISO weeks,
	// months and years that have a snapshot.
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	// KeepWithin keeps every snapshot taken within this duration before the
	// group's newest snapshot (restic's semantics: relative to the newest
	// snapshot, not to now, so a stale environment is never emptied).
	KeepWithin time.Duration
	// KeepLabels keeps every snapshot carrying one of these labels, each
	// "key=value" or "key" (any value).
	KeepLabels []string
	// OlderThan is the original report's cleanup: snapshots younger than
	// this (relative to now) are kept, older ones are removed unless another
	// rule keeps them.
	OlderThan time.Duration
	// Location is the time zone buckets are computed in; nil means
	// time.Local.
	Location *time.Location
}

// IsEmpty reports whether the policy has no rule.
func (p RetentionPolicy) IsEmpty() bool {
	return p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 &&
		p.KeepMonthly == 0 && p.KeepYearly == 0 && p.KeepWithin == 0 && len(p.KeepLabels) == 0 &&
		p.OlderThan == 0
}

// Validate checks the policy's values.
func (p RetentionPolicy) Validate() error {
	counts := []struct {
		name string
		n    int
	}{
		{"keep-last", p.KeepLast}, {"keep-hourly", p.KeepHourly}, {"keep-daily", p.KeepDaily},
		{"keep-weekly", p.KeepWeekly}, {"keep-monthly", p.KeepMonthly}, {"keep-yearly", p.KeepYearly},
	}
	for _, c := range counts {
		if c.n < Unlimited {
			return fmt.Errorf("%s %d: must be ≥ 0 or %d (unlimited)", c.name, c.n, Unlimited)
		}
	}
	if p.KeepWithin < 0 {
		return fmt.Errorf("keep-within %s: must not be negative", p.KeepWithin)
	}
	if p.OlderThan < 0 {
		return fmt.Errorf("older-than %s: must not be negative", p.OlderThan)
	}
	for _, l := range p.KeepLabels {
		if _, _, err := parseLabelSelector(l); err != nil {
			return err
		}
	}
	return nil
}

// String describes the policy's rules, for reports and logs.
func (p RetentionPolicy) String() string {
	var parts []string
	add := func(name string, n int) {
		switch {
		case n == Unlimited:
			parts = append(parts, name+" unlimited")
		case n > 0:
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	add("keep-last", p.KeepLast)
	add("keep-hourly", p.KeepHourly)
	add("keep-daily", p.KeepDaily)
	add("keep-weekly", p.KeepWeekly)
	add("keep-monthly", p.KeepMonthly)
	add("keep-yearly", p.KeepYearly)
	if p.KeepWithin > 0 {
		parts = append(parts, "keep-within "+formatAge(p.KeepWithin))
	}
	for _, l := range p.KeepLabels {
		parts = append(parts, "keep-label "+l)
	}
	if p.OlderThan > 0 {
		parts = append(parts, "older-than "+formatAge(p.OlderThan))
	}
	if len(parts) == 0 {
		return "(no rule)"
	}
	return strings.Join(parts, ", ")
}

// RetentionDecision is what the policy decided for one snapshot, and why.
type RetentionDecision struct {
	Snapshot *store.Snapshot
	// Keep is true when at least one rule keeps the snapshot.
	Keep bool
	// Reasons are the rules that keep it ("last 1/3", "daily 2026-11-28",
	// "within 7d of newest", "label pin=yes", "younger than 30d"), or, for a
	// removed snapshot, why no rule did.
	Reasons []string
}

// RetentionGroup is the decisions for one environment, newest first.
type RetentionGroup struct {
	Engine    string
	EnvID     string
	Decisions []RetentionDecision
}

// Kept and Removed count the group's decisions.
func (g RetentionGroup) Kept() int {
	n := 0
	for _, d := range g.Decisions {
		if d.Keep {
			n++
		}
	}
	return n
}

// Removed counts the snapshots the policy removes from the group.
func (g RetentionGroup) Removed() int { return len(g.Decisions) - g.Kept() }

// Apply decides, for every snapshot, whether the policy keeps it, grouping
// by engine and env ID. now is the clock OlderThan is measured against.
// Groups come sorted by engine and env ID, decisions newest first.
func (p RetentionPolicy) Apply(snaps []*store.Snapshot, now time.Time) ([]RetentionGroup, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.IsEmpty() {
		return nil, ErrEmptyPolicy
	}
	type groupKey struct{ engine, env string }
	byGroup := map[groupKey][]*store.Snapshot{}
	var keys []groupKey
	for _, s := range snaps {
		k := groupKey{s.Engine, s.EnvID}
		if _, ok := byGroup[k]; !ok {
			keys = append(keys, k)
		}
		byGroup[k] = append(byGroup[k], s)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].engine != keys[j].engine {
			return keys[i].engine < keys[j].engine
		}
		return keys[i].env < keys[j].env
	})
	groups := make([]RetentionGroup, 0, len(keys))
	for _, k := range keys {
		groups = append(groups, RetentionGroup{
			Engine:    k.engine,
			EnvID:     k.env,
			Decisions: p.applyGroup(byGroup[k], now),
		})
	}
	return groups, nil
}

// bucketRule keeps the newest snapshot of each of the last n buckets.
type bucketRule struct {
	name   string
	n      int
	bucket func(t time.Time) string
	// last is the bucket of the snapshot this rule last kept.
	last string
	kept int
}

func (p RetentionPolicy) applyGroup(snaps []*store.Snapshot, now time.Time) []RetentionDecision {
	sorted := append([]*store.Snapshot(nil), snaps...)
	sortNewestFirst(sorted)
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	rules := []*bucketRule{
		{name: "hourly", n: p.KeepHourly, bucket: func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{name: "daily", n: p.KeepDaily, bucket: func(t time.Time) string { return t.Format("2006-01-02") }},
		{name: "weekly", n: p.KeepWeekly, bucket: func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{name: "monthly", n: p.KeepMonthly, bucket: func(t time.Time) string { return t.Format("2006-01") }},
		{name: "yearly", n: p.KeepYearly, bucket: func(t time.Time) string { return t.Format("2006") }},
	}
	selectors := make([][2]string, 0, len(p.KeepLabels))
	for _, l := range p.KeepLabels {
		k, v, _ := parseLabelSelector(l) // validated by Apply
		selectors = append(selectors, [2]string{k, v})
	}
	var newest time.Time
	if len(sorted) > 0 {
		newest = sorted[0].CreatedAt
	}
	out := make([]RetentionDecision, 0, len(sorted))
	for i, s := range sorted {
		var reasons []string
		if p.KeepLast == Unlimited || i < p.KeepLast {
			if p.KeepLast == Unlimited {
				reasons = append(reasons, "last (unlimited)")
			} else {
				reasons = append(reasons, fmt.Sprintf("last %d/%d", i+1, p.KeepLast))
			}
		}
		t := s.CreatedAt.In(loc)
		for _, r := range rules {
			if r.n == 0 || (r.n != Unlimited && r.kept >= r.n) {
				continue
			}
			b := r.bucket(t)
			if b == r.last {
				continue
			}
			r.last = b
			r.kept++
			reasons = append(reasons, r.name+" "+b)
		}
		if p.KeepWithin > 0 && !s.CreatedAt.Before(newest.Add(-p.KeepWithin)) {
			reasons = append(reasons, "within "+formatAge(p.KeepWithin)+" of newest")
		}
		for _, sel := range selectors {
			if v, ok := s.Labels[sel[0]]; ok && (sel[1] == "" || sel[1] == v) {
				reasons = append(reasons, "label "+sel[0]+"="+v)
			}
		}
		if p.OlderThan > 0 && s.CreatedAt.After(now.Add(-p.OlderThan)) {
			reasons = append(reasons, "younger than "+formatAge(p.OlderThan))
		}
		d := RetentionDecision{Snapshot: s, Keep: len(reasons) > 0, Reasons: reasons}
		if !d.Keep {
			if p.OlderThan > 0 && p.onlyOlderThan() {
				d.Reasons = []string{"older than " + formatAge(p.OlderThan)}
			} else {
				d.Reasons = []string{"no rule keeps it"}
			}
		}
		out = append(out, d)
	}
	return out
}

// onlyOlderThan reports whether OlderThan is the policy's only rule.
func (p RetentionPolicy) onlyOlderThan() bool {
	q := p
	q.OlderThan = 0
	return q.IsEmpty()
}

// sortNewestFirst orders records by creation time, newest first; IDs break
// ties (they sort by time too).
func sortNewestFirst(snaps []*store.Snapshot) {
	sort.SliceStable(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID > b.ID
	})
}

// parseLabelSelector splits "key=value" or "key" (any value).
func parseLabelSelector(s string) (key, value string, err error) {
	key, value, _ = strings.Cut(s, "=")
	if key == "" {
		return "", "", fmt.Errorf("label selector %q: empty key", s)
	}
	return key, value, nil
}

// formatAge prints a duration in days when it is a whole number of days
// (the unit people think of retention in), else as Go does.
func formatAge(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ParseAge parses a retention duration: Go's syntax ("36h", "90m") plus
// days, weeks and years ("30d", "2w", "1y", "1y2w3d4h").
func ParseAge(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if s == "" {
		return 0, fmt.Errorf("invalid age: empty")
	}
	rest := s
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || i > 9 {
			return 0, fmt.Errorf("invalid age %q: want e.g. 30d, 2w, 1y, 36h", s)
		}
		n := time.Duration(0)
		for _, c := range rest[:i] {
			n = n*10 + time.Duration(c-'0')
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unit := rest[i:j]
		var u time.Duration
		switch unit {
		case "y":
			u = 365 * 24 * time.Hour
		case "w":
			u = 7 * 24 * time.Hour
		case "d":
			u = 24 * time.Hour
		case "h":
			u = time.Hour
		case "m":
			u = time.Minute
		case "s":
			u = time.Second
		default:
			return 0, fmt.Errorf("invalid age %q: unknown unit %q", s, unit)
		}
		total += n * u
		rest = rest[j:]
	}
	return total, nil
}
