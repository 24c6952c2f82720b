// Command ptest-snap-engine-dir is the directory engine as a plugin: the
// host (ptest-snap) launches it and talks to it over go-plugin gRPC. It is
// not meant to be run by hand.
package main

import (
	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/dir"
)

func main() { pluginapi.Serve(dir.New()) }
