package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

func (s *Store) readSnapshot(txn *badger.Txn, id string) (*Snapshot, error) {
	item, err := txn.Get(snapshotKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	var snap *Snapshot
	err = item.Value(func(v []byte) error {
		snap, err = DecodeSnapshot(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	return snap, nil
}

// Snapshot returns the record with the exact id.
func (s *Store) Snapshot(ctx context.Context, id string) (*Snapshot, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var snap *Snapshot
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		snap, err = s.readSnapshot(txn, id)
		return err
	})
	return snap, err
}

// Snapshots returns every record, oldest first (by creation time, then id).
func (s *Store) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []*Snapshot
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindSnapshot}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[1:])
			err := it.Item().Value(func(v []byte) error {
				snap, err := DecodeSnapshot(v)
				if err != nil {
					return fmt.Errorf("snapshot %s: %w", id, err)
				}
				out = append(out, snap)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// SnapshotsByEnv returns the records of one environment of one engine,
// newest first, from the env/time index.
func (s *Store) SnapshotsByEnv(ctx context.Context, engine, envID string) ([]*Snapshot, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	prefix := envPrefix(engine, envID)
	var out []*Snapshot
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		// Reverse iteration starts at the last key <= the seek key.
		seek := append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < len(prefix)+8 {
				return fmt.Errorf("%w: env index key %q", ErrCorrupt, k)
			}
			snap, err := s.readSnapshot(txn, string(k[len(prefix)+8:]))
			if err != nil {
				return err
			}
			out = append(out, snap)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SnapshotByName returns the record with the given name.
func (s *Store) SnapshotByName(ctx context.Context, name string) (*Snapshot, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var snap *Snapshot
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nameKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("snapshot named %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		snap, err = s.readSnapshot(txn, string(id))
		return err
	})
	return snap, err
}

// IDsWithPrefix returns the IDs starting with prefix, sorted.
func (s *Store) IDsWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: snapshotKey(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ids = append(ids, string(it.Item().Key()[1:]))
		}
		return nil
	})
	return ids, err
}

// UpdateSnapshot rewrites the mutable fields of a record (Name, Labels); the
// record is found by snap.ID and every other field is kept as stored. A name
// taken by another snapshot fails with ErrExists.
func (s *Store) UpdateSnapshot(ctx context.Context, snap *Snapshot) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.gated(func() error {
		return s.update(func(txn *badger.Txn) error {
			cur, err := s.readSnapshot(txn, snap.ID)
			if err != nil {
				return err
			}
			if snap.Name != cur.Name {
				if snap.Name != "" {
					item, err := txn.Get(nameKey(snap.Name))
					if err == nil {
						other, _ := item.ValueCopy(nil)
						return fmt.Errorf("snapshot name %q (used by %s): %w", snap.Name, other, ErrExists)
					} else if !errors.Is(err, badger.ErrKeyNotFound) {
						return err
					}
					if err := txn.Set(nameKey(snap.Name), []byte(snap.ID)); err != nil {
						return err
					}
				}
				if cur.Name != "" {
					if err := txn.Delete(nameKey(cur.Name)); err != nil {
						return err
					}
				}
			}
			cur.Name, cur.Labels = snap.Name, snap.Labels
			b, err := EncodeSnapshot(cur)
			if err != nil {
				return err
			}
			return txn.Set(snapshotKey(cur.ID), b)
		})
	})
}

// DeleteSnapshot removes a record and its indexes; its chunks go at the next
// GC. Deleting a snapshot that does not exist fails with ErrNotFound.
func (s *Store) DeleteSnapshot(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.gated(func() error {
		return s.update(func(txn *badger.Txn) error {
			cur, err := s.readSnapshot(txn, id)
			if err != nil {
				return err
			}
			keys := [][]byte{snapshotKey(id), envKey(cur.Engine, cur.EnvID, cur.CreatedAt, id), indexKey(id)}
			if cur.Name != "" {
				keys = append(keys, nameKey(cur.Name))
			}
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("delete %s: sync: %w", id, err)
	}
	return nil
}
