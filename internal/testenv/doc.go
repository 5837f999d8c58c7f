// Package testenv gives tests the real parts they need — a Docker engine,
// external checker binaries — and makes their absence loud: with CI set a
// missing part fails the test; elsewhere it skips with a reason.
package testenv
