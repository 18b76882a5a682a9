package fastjson

// strCache turns decoded string bytes into strings, allocating each
// distinct short string once while it stays in the cache: ids, names and
// codes repeat from record to record, and a string per field per record
// is an allocation per record. It is bounded: strings longer than
// cacheLenMax bytes are not cached, and when it holds cacheEntriesMax
// strings it starts over. A field whose strings mostly do not repeat (a
// free-text field, a unique id) stops using it for a while, so that it
// neither pays for the lookups nor pushes the repeating fields' strings
// out.
type strCache struct {
	m     map[string]string
	stats []strStat // per string field of the plan
}

const (
	cacheLenMax     = 64
	cacheEntriesMax = 1 << 14
	// Every statWindow lookups of a field, a field with more than
	// statMissMax misses bypasses the cache for its next bypassLen
	// strings.
	statWindow  = 1024
	statMissMax = statWindow * 3 / 4
	bypassLen   = 1 << 16
)

// strStat counts one field's cache lookups and misses in the current
// window.
type strStat struct {
	lookups, misses, bypass uint32
}

func newStrCache(fields int) *strCache {
	return &strCache{stats: make([]strStat, fields)}
}

// get is string(b), from the cache when it is there. slot is the
// field's string slot.
func (c *strCache) get(b []byte, slot int) string {
	if len(b) == 0 || len(b) > cacheLenMax {
		return string(b)
	}
	st := &c.stats[slot]
	if st.bypass > 0 {
		st.bypass--
		return string(b)
	}
	st.lookups++
	s, ok := c.m[string(b)] // no allocation for the lookup
	if !ok {
		st.misses++
		if c.m == nil || len(c.m) >= cacheEntriesMax {
			c.m = make(map[string]string, 1024)
		}
		s = string(b)
		c.m[s] = s
	}
	if st.lookups == statWindow {
		if st.misses > statMissMax {
			st.bypass = bypassLen
		}
		st.lookups, st.misses = 0, 0
	}
	return s
}
