package core

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/store"
)

// retentionClock is the fixed "now" of the retention tests.
var retentionClock = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// snapAt returns a record of env "e" created at t, its ID its time.
func snapAt(t time.Time, labels ...string) *store.Snapshot {
	s := &store.Snapshot{ID: t.Format("20060102T150405"), Engine: "dir", EnvID: "e", CreatedAt: t}
	if len(labels) > 0 {
		s.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := parseLabelSelector(l)
			s.Labels[k] = v
		}
	}
	return s
}

// daily returns one snapshot per day at noon, n days ending on retentionClock's day.
func dailySnaps(n int) []*store.Snapshot {
	var out []*store.Snapshot
	for i := 0; i < n; i++ {
		out = append(out, snapAt(retentionClock.AddDate(0, 0, -i)))
	}
	return out
}

func keptIDs(t *testing.T, groups []RetentionGroup) []string {
	t.Helper()
	var ids []string
	for _, g := range groups {
		for _, d := range g.Decisions {
			if d.Keep {
				ids = append(ids, d.Snapshot.ID)
			}
		}
	}
	return ids
}

func day(offset int, hour int) time.Time {
	return time.Date(2026, 11, 28+offset, hour, 0, 0, 0, time.UTC)
}

func ids(times ...time.Time) []string {
	var out []string
	for _, t := range times {
		out = append(out, t.Format("20060102T150405"))
	}
	return out
}

func TestRetentionRules(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		name   string
		policy RetentionPolicy
		snaps  []*store.Snapshot
		want   []string // kept IDs, newest first
		reason map[string]string
	}{
		{
			name:   "keep-last 2",
			policy: RetentionPolicy{KeepLast: 2},
			snaps:  dailySnaps(5),
			want:   ids(day(0, 12), day(-1, 12)),
			reason: map[string]string{ids(day(0, 12))[0]: "last 1/2", ids(day(-2, 12))[0]: "no rule keeps it"},
		},
		{
			name:   "keep-last unlimited keeps all",
			policy: RetentionPolicy{KeepLast: Unlimited},
			snaps:  dailySnaps(3),
			want:   ids(day(0, 12), day(-1, 12), day(-2, 12)),
		},
		{
			name:   "keep-daily keeps newest of each day",
			policy: RetentionPolicy{KeepDaily: 2, Location: utc},
			snaps: []*store.Snapshot{
				snapAt(day(0, 9)), snapAt(day(0, 11)), snapAt(day(-1, 8)), snapAt(day(-1, 23)), snapAt(day(-2, 1)),
			},
			want:   ids(day(0, 11), day(-1, 23)),
			reason: map[string]string{ids(day(0, 11))[0]: "daily 2026-11-28"},
		},
		{
			name:   "keep-hourly",
			policy: RetentionPolicy{KeepHourly: 2, Location: utc},
			snaps: []*store.Snapshot{
				snapAt(day(0, 10).Add(5 * time.Minute)), snapAt(day(0, 10).Add(50 * time.Minute)),
				snapAt(day(0, 9)), snapAt(day(0, 8)),
			},
			want:   ids(day(0, 10).Add(50*time.Minute), day(0, 9)),
			reason: map[string]string{ids(day(0, 9))[0]: "hourly 2026-11-28 09h"},
		},
		{
			name:   "keep-weekly uses ISO weeks",
			policy: RetentionPolicy{KeepWeekly: 2, Location: utc},
			// 2026-11-28 is a Saturday (week 48); 11-23 Monday week 48; 11-22 Sunday week 47.
			snaps: []*store.Snapshot{snapAt(day(0, 12)), snapAt(day(-5, 12)), snapAt(day(-6, 12)), snapAt(day(-7, 12))},
			want:  ids(day(0, 12), day(-6, 12)),
			reason: map[string]string{
				ids(day(0, 12))[0]:  "weekly 2026-W48",
				ids(day(-6, 12))[0]: "weekly 2026-W47",
			},
		},
		{
			name:   "keep-monthly",
			policy: RetentionPolicy{KeepMonthly: 2, Location: utc},
			snaps: []*store.Snapshot{
				snapAt(time.Date(2026, 11, 2, 0, 0, 0, 0, utc)), snapAt(time.Date(2026, 11, 1, 0, 0, 0, 0, utc)),
				snapAt(time.Date(2026, 10, 31, 0, 0, 0, 0, utc)), snapAt(time.Date(2026, 9, 30, 0, 0, 0, 0, utc)),
			},
			want: ids(time.Date(2026, 11, 2, 0, 0, 0, 0, utc), time.Date(2026, 10, 31, 0, 0, 0, 0, utc)),
		},
		{
			name:   "keep-yearly",
			policy: RetentionPolicy{KeepYearly: Unlimited, Location: utc},
			snaps: []*store.Snapshot{
				snapAt(time.Date(2026, 1, 2, 0, 0, 0, 0, utc)), snapAt(time.Date(2026, 1, 1, 0, 0, 0, 0, utc)),
				snapAt(time.Date(2025, 12, 31, 0, 0, 0, 0, utc)), snapAt(time.Date(2024, 6, 1, 0, 0, 0, 0, utc)),
			},
			want: ids(time.Date(2026, 1, 2, 0, 0, 0, 0, utc), time.Date(2025, 12, 31, 0, 0, 0, 0, utc),
				time.Date(2024, 6, 1, 0, 0, 0, 0, utc)),
		},
		{
			name:   "bucket in another time zone",
			policy: RetentionPolicy{KeepDaily: 1, Location: time.FixedZone("UTC+5", 5*3600)},
			// 20:00 UTC on the 27th is the 28th in UTC+5, same day as 10:00 UTC on the 28th.
			snaps: []*store.Snapshot{snapAt(day(0, 10)), snapAt(day(-1, 20))},
			want:  ids(day(0, 10)),
		},
		{
			name:   "keep-within is relative to the newest snapshot",
			policy: RetentionPolicy{KeepWithin: 48 * time.Hour},
			// The env's newest snapshot is 100 days old: within still keeps 3.
			snaps: []*store.Snapshot{
				snapAt(day(-100, 12)), snapAt(day(-101, 12)), snapAt(day(-102, 12)), snapAt(day(-103, 12)),
			},
			want:   ids(day(-100, 12), day(-101, 12), day(-102, 12)),
			reason: map[string]string{ids(day(-102, 12))[0]: "within 2d of newest"},
		},
		{
			name:   "keep-label with value and any value",
			policy: RetentionPolicy{KeepLabels: []string{"pin=yes", "release"}},
			snaps: []*store.Snapshot{
				snapAt(day(0, 12), "pin=no"), snapAt(day(-1, 12), "pin=yes"), snapAt(day(-2, 12), "release=1.0"),
				snapAt(day(-3, 12)),
			},
			want:   ids(day(-1, 12), day(-2, 12)),
			reason: map[string]string{ids(day(-1, 12))[0]: "label pin=yes", ids(day(-2, 12))[0]: "label release=1.0"},
		},
		{
			name:   "older-than alone: the original cleanup",
			policy: RetentionPolicy{OlderThan: DefaultCleanupAge},
			snaps:  []*store.Snapshot{snapAt(day(0, 11)), snapAt(day(-29, 12)), snapAt(day(-30, 11)), snapAt(day(-45, 12))},
			want:   ids(day(0, 11), day(-29, 12)),
			reason: map[string]string{
				ids(day(-29, 12))[0]: "younger than 30d",
				ids(day(-30, 11))[0]: "older than 30d",
			},
		},
		{
			name:   "older-than combined with keep-last keeps the union",
			policy: RetentionPolicy{OlderThan: 7 * 24 * time.Hour, KeepLast: 1},
			snaps:  []*store.Snapshot{snapAt(day(-10, 12)), snapAt(day(-20, 12))},
			want:   ids(day(-10, 12)),
			reason: map[string]string{ids(day(-20, 12))[0]: "no rule keeps it"},
		},
		{
			name:   "several rules name every reason",
			policy: RetentionPolicy{KeepLast: 1, KeepDaily: 1, Location: utc},
			snaps:  dailySnaps(2),
			want:   ids(day(0, 12)),
			reason: map[string]string{ids(day(0, 12))[0]: "last 1/1, daily 2026-11-28"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			groups, err := tc.policy.Apply(tc.snaps, retentionClock)
			require.NoError(t, err)
			assert.Equal(t, tc.want, keptIDs(t, groups))
			for id, want := range tc.reason {
				found := false
				for _, d := range groups[0].Decisions {
					if d.Snapshot.ID == id {
						found = true
						assert.Equal(t, want, joinReasons(d.Reasons), id)
					}
				}
				assert.True(t, found, id)
			}
		})
	}
}

func joinReasons(r []string) string {
	s := ""
	for i, x := range r {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

func TestRetentionGroupsByEngineAndEnv(t *testing.T) {
	var snaps []*store.Snapshot
	for _, env := range []struct{ engine, env string }{{"dir", "a"}, {"dir", "b"}, {"virtualenv", "a"}} {
		for i := 0; i < 3; i++ {
			s := snapAt(day(-i, 12))
			s.ID = fmt.Sprintf("%s-%s-%d", env.engine, env.env, i)
			s.Engine, s.EnvID = env.engine, env.env
			snaps = append(snaps, s)
		}
	}
	groups, err := RetentionPolicy{KeepLast: 1}.Apply(snaps, retentionClock)
	require.NoError(t, err)
	require.Len(t, groups, 3)
	assert.Equal(t, []string{"dir-a-0", "dir-b-0", "virtualenv-a-0"}, keptIDs(t, groups))
	for _, g := range groups {
		assert.Equal(t, 1, g.Kept())
		assert.Equal(t, 2, g.Removed())
	}
	assert.Equal(t, "virtualenv", groups[2].Engine)
}

func TestRetentionRefusesEmptyAndInvalidPolicies(t *testing.T) {
	_, err := RetentionPolicy{}.Apply(dailySnaps(2), retentionClock)
	require.ErrorIs(t, err, ErrEmptyPolicy)
	_, err = RetentionPolicy{KeepLast: -2}.Apply(dailySnaps(2), retentionClock)
	require.ErrorContains(t, err, "keep-last")
	_, err = RetentionPolicy{KeepLabels: []string{"=x"}}.Apply(dailySnaps(2), retentionClock)
	require.ErrorContains(t, err, "empty key")
	_, err = RetentionPolicy{KeepWithin: -time.Hour}.Apply(dailySnaps(2), retentionClock)
	require.ErrorContains(t, err, "keep-within")
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1y": 365 * 24 * time.Hour,
		"36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute,
	} {
		got, err := ParseAge(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "d", "30", "3x", "-1d", "99999999999d"} {
		_, err := ParseAge(bad)
		assert.Error(t, err, bad)
	}
}

func TestRetentionPolicyString(t *testing.T) {
	p := RetentionPolicy{KeepLast: 3, KeepDaily: Unlimited, KeepWithin: 48 * time.Hour, KeepLabels: []string{"pin"}, OlderThan: DefaultCleanupAge}
	assert.Equal(t, "keep-last 3, keep-daily unlimited, keep-within 2d, keep-label pin, older-than 30d", p.String())
	assert.Equal(t, "(no rule)", RetentionPolicy{}.String())
}
