package rdk

/*
extern int weir_malloc_arenas;
*/
import "C"

// MallocArenas is the number of glibc malloc arenas the process was
// limited to when it started (0: not limited, glibc's default of eight per
// core, or not glibc).
//
// librdkafka's threads allocate every fetched and produced message, and
// free them on other threads; with glibc's default arena count each
// thread's arena keeps the memory it freed, so the C heap held about four
// times what it used (Q1 at 10^5 keys: 117 MiB held for 30 MiB in use, a
// third of the process's peak RSS). Two arenas held 70 to 74 MiB there,
// at the same throughput. The limit is set by a constructor before the first
// thread starts (glibc fixes the arena count early): MALLOC_ARENA_MAX or
// malloc.arena_max in GLIBC_TUNABLES, when set, win; WEIR_MALLOC_ARENA_MAX
// sets another count, 0 leaves glibc's default.
func MallocArenas() int { return int(C.weir_malloc_arenas) }
