// Package ui is the status page a running job serves at `/`: one HTML
// page, a script and a style sheet embedded in the binary (no build step,
// no CDN, no external fonts). The page polls the REST status of package obs
// (/api/job, /api/checkpoints, /api/throughput) once a second and draws the
// job graph, the lag per source partition, a throughput chart over the last
// minutes and the checkpoint table; when the API cannot be reached it says
// so and keeps the last figures dimmed.
//
// A caller:
//
//  1. Builds the handler of a job's status with the page:
//     obs.NewHandler(provider, gatherer, ui.Handler()).
//  2. Serves it (obs.Serve) on a loopback address and prints the address.
//
// Elements the tests (and anyone scripting the page) rely on:
//
//	#graph svg g.operator[data-id]   one per operator: name, parallelism, rates, backpressure
//	#graph svg g.edge[data-ship]     one per edge: an arrow labelled with the ship strategy
//	#lag tbody tr                    one per source partition
//	#chart svg polyline.in, .out     records in/out per second, one point per sample
//	#checkpoints tbody tr            one per checkpoint, newest first
//	#error                           the message shown while the API cannot be reached
package ui

import (
	"embed"
	"net/http"
)

//go:embed assets/index.html assets/app.js assets/style.css
var assets embed.FS

// files maps the served paths to the embedded assets and their content types.
var files = map[string]struct{ name, contentType string }{
	"/":           {"assets/index.html", "text/html; charset=utf-8"},
	"/index.html": {"assets/index.html", "text/html; charset=utf-8"},
	"/app.js":     {"assets/app.js", "text/javascript; charset=utf-8"},
	"/style.css":  {"assets/style.css", "text/css; charset=utf-8"},
}

// Handler serves the status page: / (index.html), /app.js and /style.css;
// GET and HEAD only, 404 for any other path. Mount it as the page of
// obs.NewHandler, which routes /api/ and /metrics before it.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.Error(w, "404 not found: the status page serves /, /app.js and /style.css; the API is under /api/", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed: use GET", http.StatusMethodNotAllowed)
			return
		}
		b, err := assets.ReadFile(f.name)
		if err != nil { // cannot happen: the names are embedded above
			http.Error(w, "500 status page asset missing: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		// The assets change with the binary only; no-cache makes the
		// browser revalidate, so a restarted newer engine is picked up.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b) // the client went away: nothing to do
	})
}
