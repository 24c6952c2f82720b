package virtualenv

import (
	"context"
	"fmt"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Restore is being written against fstree's Applier.
func (*Engine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	return nil, fmt.Errorf("%w: virtualenv restore is not written yet", pluginapi.ErrUnsupported)
}
