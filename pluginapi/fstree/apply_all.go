package fstree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/pypj/ptest-snap/pluginapi"
)

// ApplyAll reads r to its end, giving each entry to the Applier of its
// stream, then finishes every Applier (in stream-name order). An entry of a
// stream without an Applier is an error. On any error every Applier is
// closed. This is the whole Restore of a simple file engine.
func ApplyAll(ctx context.Context, r pluginapi.RestoreReader, appliers map[string]*Applier) (err error) {
	defer func() {
		if err != nil {
			for _, a := range appliers {
				a.Close()
			}
		}
	}()
	for {
		stream, e, body, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		a, ok := appliers[stream]
		if !ok {
			return fmt.Errorf("restore: entry %q of unexpected stream %q", e.Path, stream)
		}
		if err := a.Apply(ctx, e, body); err != nil {
			return fmt.Errorf("restore stream %s: %w", stream, err)
		}
	}
	names := make([]string, 0, len(appliers))
	for name := range appliers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := appliers[name].Finish(ctx); err != nil {
			return fmt.Errorf("restore stream %s: %w", name, err)
		}
	}
	return nil
}
