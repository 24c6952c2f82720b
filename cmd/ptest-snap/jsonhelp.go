package main

import (
	_ "embed"

	"github.com/spf13/cobra"
)

// jsonDoc documents the shapes --json prints; it is also JSON.md beside this
// file, for readers of the source.
//
//go:embed JSON.md
var jsonDoc string

// jsonHelpTopic is 'ptest-snap help json'.
func jsonHelpTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "json",
		Short: "The JSON documents --json prints (help topic)",
		Long:  jsonDoc,
	}
}
