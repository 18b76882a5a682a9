package actors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/weirstream/weir/snapshot"
)

// MergeSourceStates merges the operator states of the source subtasks of a
// checkpoint into one holding every partition's position; each new source
// subtask keeps the partitions it owns. each calls add for every old state.
func MergeSourceStates(each func(add func(op []byte) error) error) ([]byte, error) {
	merged := sourceState{Partitions: map[int32]partitionRecord{}, Watermark: math.MaxInt64}
	n := 0
	err := each(func(op []byte) error {
		var st sourceState
		if err := json.Unmarshal(op, &st); err != nil {
			return fmt.Errorf("source state unreadable: %w", err)
		}
		if n > 0 && st.Topic != merged.Topic {
			return fmt.Errorf("source states read different topics (%q, %q)", merged.Topic, st.Topic)
		}
		merged.Topic = st.Topic
		for p, r := range st.Partitions {
			merged.Partitions[p] = r
		}
		merged.Watermark = min(merged.Watermark, st.Watermark)
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("no source state")
	}
	return json.Marshal(merged)
}

// RedistributeWindowState copies every keyed-state entry of an old window
// subtask's store to the store of the new subtask that owns its key group.
func RedistributeWindowState(from *snapshot.Store, to []*snapshot.Store) error {
	batches := make([]*snapshot.Batch, len(to))
	for i, s := range to {
		batches[i] = s.NewBatch()
		defer batches[i].Close()
	}
	it, err := from.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 10 {
			return fmt.Errorf("malformed window state entry (key %d bytes)", len(k))
		}
		v, err := it.Value()
		if err != nil {
			return err
		}
		kg := int(binary.BigEndian.Uint16(k[:2]))
		if kg >= KeyGroups {
			return fmt.Errorf("window state entry in key group %d, beyond %d", kg, KeyGroups)
		}
		b := batches[SubtaskForKeyGroup(kg, len(to))]
		if err := b.Set(append([]byte(nil), k...), append([]byte(nil), v...)); err != nil {
			return err
		}
		if n++; n%stateBatchEntries == 0 {
			for _, b := range batches {
				if err := b.Commit(); err != nil {
					return err
				}
			}
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	for _, b := range batches {
		if err := b.Commit(); err != nil {
			return err
		}
	}
	return nil
}
