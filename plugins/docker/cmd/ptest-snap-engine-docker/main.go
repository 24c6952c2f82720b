// Command ptest-snap-engine-docker is the Docker engine plugin of
// ptest-snap. The host launches it; run by hand it only says so.
package main

import (
	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/docker"
)

func main() {
	pluginapi.Serve(docker.New())
}
