// Package operator is the contract between the logic of an operator
// subtask and the task actor that runs it (Operator, Rec, Capture, Iter,
// key groups), and the keyed state backend that user operators build on:
// Flink's ValueState, MapState and ListState and its TimerService, in
// pure Go, with no goroutines and no clock of its own.
//
// A KeyedState owns, for one operator subtask:
//
//   - the registered states (Value, Map, List), held in memory in Go maps
//     like Flink's heap state backend, each scoped to the current key, with
//     an optional TTL (WithTTL);
//   - the event-time and processing-time timers of each key, in a min-heap
//     by (time, key);
//   - what changed since the last checkpoint, and the copy-on-write cells
//     that let a snapshot worker encode it while processing goes on;
//   - the store layout of its entries (below);
//   - the codecs of values (Codec, DefaultCodec, JSONCodec and the fixed
//     width built-ins).
//
// The task's Pebble store holds the durable copy of the state; the
// KeyedState neither reads nor writes it. The operator that uses a
// KeyedState, and the task around it, must:
//
//  1. Create it with NewKeyedState, with Track set when checkpoints are on
//     (and Now set in tests that use a TTL).
//  2. In Open, before processing anything, call Restore once with the
//     restored Iter (nil on a fresh start) and register the states with
//     Value, Map and List, in either order. A registration error (a
//     restored entry that does not decode, a name registered with another
//     kind) fails Open.
//  3. Call SetCurrentKey before touching a state or a timer for a record:
//     states and timers act on the current key.
//  4. Call AdvanceWatermark from Operator.Watermark and
//     AdvanceProcessingTime from Operator.ProcessingTime, and answer
//     Operator.NextProcessingTimer with NextProcessingTimer. Fire calls set
//     the current key themselves.
//  5. In Operator.Snapshot, call Capture and hand the function it returns
//     over as Capture.Entries; keep the watermark and anything else of the
//     operator's own in Capture.OpState. The function runs later on the
//     snapshot worker, which writes its entries (Value nil: delete) to the
//     task's store in the order of the captures.
//  6. Never change in place a value passed to Update or Put, or one read
//     back: a snapshot in flight may be encoding it. ListState copies its
//     slices itself.
//  7. Call it from one goroutine only, and use codecs that are safe for
//     concurrent use (the built-in ones are).
//
// # Store layout
//
// Every store key starts with the key group of the entry's key (KeyGroup,
// 2 bytes, big-endian), so a rescale moves entries by key group without
// decoding them:
//
//	kg(2) | kind(1) | len(name)(1) | name | rest
//
// kind is 'v' (ValueState), 'm' (MapState), 'l' (ListState), 'e'
// (event-time timer) or 'p' (processing-time timer). rest is, for a value
// or a list, the key's bytes; for a map, uvarint len(key) | key | the map
// key encoded by its codec; for a timer, whose name is empty, the time as
// the 8 bytes, big-endian, of uint64(ts) ^ 1<<63 (byte order is time
// order), then the key's bytes.
//
// A value is the bytes of the value codec; a list's is a sequence of
// (uvarint length, element bytes); with a TTL, the expiry time in
// milliseconds (8 bytes, big-endian) comes first. A timer's value is
// empty (not nil: nil deletes).
package operator
