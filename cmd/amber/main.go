// Command amber captures container evidence into sealed archives and
// inspects them. See README.md.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
