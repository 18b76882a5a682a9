//go:build enginetest

package main

import "os"

// The tests build the binary with -tags enginetest: WEIR_ENGINE_TEST_PANIC
// then names the point where it panics (see testPanic).
func init() { testPanicAt = os.Getenv("WEIR_ENGINE_TEST_PANIC") }
