package store

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// Usage is the store's size figures.
type Usage struct {
	Chunks      int64
	Packs       int64 // packs holding the small chunks
	ChunkBytes  int64 // uncompressed
	StoredBytes int64 // compressed, as kept
	DiskBytes   int64 // the directory's size on disk (allocated blocks, like du)
}

// Usage returns the store's size figures. It reads every chunk's header
// (value-log files are memory-mapped, so that touches one page per chunk;
// a bulk file's locator carries its sizes); chunks still being written are
// not counted.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	if err := s.check(ctx); err != nil {
		return Usage{}, err
	}
	var u Usage
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindChunk}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			u.Chunks++
			packed := item.UserMeta() == metaRef
			err := item.Value(func(v []byte) error {
				if packed {
					if _, _, n, err := decodeRef(v); err == nil {
						u.ChunkBytes += int64(n)
					}
					return nil
				}
				stored, raw, _ := valueSizes(v)
				u.StoredBytes += stored
				u.ChunkBytes += raw
				return nil
			})
			if err != nil {
				return err
			}
		}
		pit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindPack}})
		defer pit.Close()
		for pit.Rewind(); pit.Valid(); pit.Next() {
			u.Packs++
			err := pit.Item().Value(func(v []byte) error {
				stored, _, _ := valueSizes(v)
				u.StoredBytes += stored
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Usage{}, err
	}
	u.DiskBytes, err = dirSize(s.dir)
	return u, err
}

// dirSize is the space the directory's files take on disk: allocated
// blocks, not apparent sizes, because Badger's files are sparse
// (preallocated memtable and value-log files).
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errorsIsNotExist(err) {
				return nil // Badger removed a file while we walked
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errorsIsNotExist(err) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

func errorsIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
