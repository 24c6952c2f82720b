// Command ptest-snap-engine-virtualenv is the virtualenv engine of
// ptest-snap, served as a go-plugin subprocess. The ptest-snap host
// launches it; it is not meant to be run by hand.
package main

import (
	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/virtualenv"
)

func main() {
	pluginapi.Serve(virtualenv.New())
}
