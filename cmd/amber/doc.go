// Command amber is the CLI: one file per subcommand, each wiring flags to a
// library call. Only this package prints and picks exit codes (exit.go).
package main
