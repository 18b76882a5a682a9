// malloc.c: the process's C heap (librdkafka's, Pebble's manual memory)
// gets at most a few glibc malloc arenas. See malloc.go.
#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>

int weir_malloc_arenas = 0;

__attribute__((constructor)) static void weir_limit_malloc_arenas(void) {
	// The user's own setting wins: MALLOC_ARENA_MAX, or arena_max in
	// GLIBC_TUNABLES; WEIR_MALLOC_ARENA_MAX=0 leaves glibc's default.
	if (getenv("MALLOC_ARENA_MAX") != NULL) return;
	const char *t = getenv("GLIBC_TUNABLES");
	if (t != NULL && strstr(t, "malloc.arena_max") != NULL) return;
	int n = 2;
	const char *w = getenv("WEIR_MALLOC_ARENA_MAX");
	if (w != NULL) {
		char *end;
		long v = strtol(w, &end, 10);
		if (end == w || *end != '\0' || v < 0 || v > 1024) return; // malformed: glibc's default
		n = (int)v;
	}
	if (n <= 0) return;
	if (mallopt(M_ARENA_MAX, n) == 1) weir_malloc_arenas = n;
}
#else
int weir_malloc_arenas = 0;
#endif
