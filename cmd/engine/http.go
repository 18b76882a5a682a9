package main

import (
	"net/http"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/obs"
)

// statusPage is the handler of `/` on the --http listener (the status
// page); nil serves obs.NewHandler's plain-text index of the endpoints.
// The status page plugs in here.
func statusPage(job *weir.Job) http.Handler { return nil }

// serveStatus starts the --http listener of job on addr: /metrics, the
// REST status (/api/...) and the page at /.
func serveStatus(addr string, job *weir.Job) (*obs.Server, error) {
	return obs.Serve(addr, obs.NewHandler(job.Status(), job.Gatherer(), statusPage(job)))
}
