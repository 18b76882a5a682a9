package main

// testPanicAt names the point where a test build of the binary panics
// (tag enginetest, see testhook_enginetest.go); it is always "" in the
// binary that ships.
var testPanicAt string

// testPanic panics when a test build armed the point name: "run" (engine
// run, once its flags are parsed) or "status" (the goroutine printing the
// status lines).
func testPanic(name string) {
	if testPanicAt != "" && testPanicAt == name {
		panic("test panic at " + name)
	}
}
