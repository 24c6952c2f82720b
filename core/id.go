package core

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// IDLen is the length of a generated snapshot ID.
const IDLen = 26

// idAlphabet is Crockford's base32 in lower case: its byte order equals its
// value order, so IDs compare like the numbers they encode, and it has no
// i, l, o or u to misread.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns a new snapshot ID for time t: 48 bits of Unix milliseconds
// followed by 80 random bits, as 26 lower-case base32 characters. IDs sort
// by creation time (to the millisecond) and are unique without any
// coordination between processes.
func NewID(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	if _, err := rand.Read(b[6:]); err != nil {
		// crypto/rand.Read never fails on supported platforms (Go ≥ 1.24).
		panic(err)
	}
	return encodeID(b)
}

// encodeID encodes 128 bits as 26 base32 characters, most significant
// first (the first character carries the top 3 bits).
func encodeID(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	var out [IDLen]byte
	for i := IDLen - 1; i >= 0; i-- {
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// IDTime returns the creation time encoded in a generated ID, and false for
// an ID that was given by the user.
func IDTime(id string) (time.Time, bool) {
	if len(id) != IDLen {
		return time.Time{}, false
	}
	var ms uint64
	// The first 10 characters hold 50 bits: 2 zero bits + 48 bits of ms.
	for i := 0; i < 10; i++ {
		v := indexAlphabet(id[i])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(v)
	}
	for i := 10; i < IDLen; i++ {
		if indexAlphabet(id[i]) < 0 {
			return time.Time{}, false
		}
	}
	if ms>>48 != 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}

func indexAlphabet(c byte) int {
	for i := 0; i < len(idAlphabet); i++ {
		if idAlphabet[i] == c {
			return i
		}
	}
	return -1
}

// maxRefLen bounds user-given IDs, names and label keys.
const maxRefLen = 128

// ValidateID checks a user-given snapshot ID (CreateOptions.ID): 1 to 128
// characters from [A-Za-z0-9._-], starting with a letter or digit — so the
// original report's "snapshot_1640000000" form is accepted.
func ValidateID(id string) error {
	if err := validateToken(id); err != nil {
		return fmt.Errorf("%w: ID %q: %s", ErrInvalidID, id, err)
	}
	return nil
}

// ValidateName checks a snapshot name: the same rule as ValidateID.
func ValidateName(name string) error {
	if err := validateToken(name); err != nil {
		return fmt.Errorf("%w: name %q: %s", ErrInvalidID, name, err)
	}
	return nil
}

func validateToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxRefLen {
		return fmt.Errorf("longer than %d characters", maxRefLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("character %q at %d is not allowed (use letters, digits, '.', '_', '-'; start with a letter or digit)", c, i)
		}
	}
	return nil
}

// Resolve finds the snapshot a reference names: first an exact ID, then a
// name, then a unique ID prefix. No match is an error wrapping ErrNotFound;
// a prefix matching several IDs is an *AmbiguousError (ErrAmbiguous) that
// lists them.
func (m *Manager) Resolve(ctx context.Context, ref string) (*store.Snapshot, error) {
	if ref == "" {
		return nil, fmt.Errorf("resolve: %w: empty snapshot reference", ErrNotFound)
	}
	snap, err := m.store.Snapshot(ctx, ref)
	if err == nil {
		return snap, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("resolve %q: %w", ref, err)
	}
	snap, err = m.store.SnapshotByName(ctx, ref)
	if err == nil {
		return snap, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("resolve %q: %w", ref, err)
	}
	ids, err := m.store.IDsWithPrefix(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", ref, err)
	}
	switch len(ids) {
	case 0:
		return nil, fmt.Errorf("%w: no snapshot with ID, ID prefix or name %q", ErrNotFound, ref)
	case 1:
		snap, err := m.store.Snapshot(ctx, ids[0])
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", ref, err)
		}
		return snap, nil
	}
	sort.Strings(ids)
	return nil, &AmbiguousError{Ref: ref, Candidates: ids}
}

// ResolveMany resolves several references, in order, stopping at the first
// error.
func (m *Manager) ResolveMany(ctx context.Context, refs []string) ([]*store.Snapshot, error) {
	out := make([]*store.Snapshot, 0, len(refs))
	for _, r := range refs {
		s, err := m.Resolve(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
