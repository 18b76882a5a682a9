package barrier_test

import (
	"fmt"

	"github.com/weirstream/weir/barrier"
)

// An operator with two inputs aligning checkpoint 1: input 0 delivers the
// barrier first, so its next record waits until input 1 delivers it too.
func Example() {
	a, err := barrier.New[string](barrier.Config{Inputs: 2, Mode: barrier.ExactlyOnce, MaxHeldBytes: 1 << 20})
	if err != nil {
		fmt.Println(err)
		return
	}
	do := func(acts []barrier.Action[string]) {
		for _, act := range acts {
			fmt.Println(act)
		}
	}
	do(a.Data(0, "a1", 100))
	do(a.Barrier(0, 1))
	do(a.Data(0, "a2", 100)) // held: input 0 is blocked
	do(a.Data(1, "b1", 100))
	do(a.Barrier(1, 1))
	// Output:
	// process in=0 item=a1
	// process in=1 item=b1
	// snapshot ckpt=1
	// forward-barrier ckpt=1
	// process in=0 item=a2
}
