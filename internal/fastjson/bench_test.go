package fastjson

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkDecode: the event type from JSON whose user ids repeat (1000
// of them), whose strings have escapes, and whose ids never repeat;
// fast (a Decoder) and encoding/json. The unique ids are more than the
// string cache holds.
func BenchmarkDecode(b *testing.B) {
	inputs := map[string]func(i int) string{
		"repeating": func(i int) string {
			return fmt.Sprintf(`{"user":"u%d","ts":%d,"amount":%d,"seq":%d}`, i%1000, 1_700_000_000_000+i, i%100, i)
		},
		"escaped": func(i int) string {
			return fmt.Sprintf(`{"user":"caf\u00e9 \"%d\"","ts":%d,"amount":%d,"seq":%d}`, i%1000, 1_700_000_000_000+i, i%100, i)
		},
		"unique": func(i int) string {
			return fmt.Sprintf(`{"user":"id-%016d","ts":%d,"amount":%d,"seq":%d}`, i, 1_700_000_000_000+i, i%100, i)
		},
	}
	for _, name := range []string{"repeating", "escaped", "unique"} {
		n := 4096
		if name == "unique" {
			n = 4 * cacheEntriesMax
		}
		values := make([][]byte, n)
		for i := range values {
			values[i] = []byte(inputs[name](i))
		}
		b.Run(name+"/fast", func(b *testing.B) {
			d := NewDecoder[event]()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := d.Decode(values[i%len(values)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var e event
				if err := json.Unmarshal(values[i%len(values)], &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
