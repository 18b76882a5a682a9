package main

import (
	"net/http"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/obs"
	"github.com/weirstream/weir/internal/obs/ui"
)

// statusPage is the handler of `/` on the --http listener: the status page
// of package internal/obs/ui (job graph, lag, throughput, checkpoints),
// which reads the job through the REST status beside it.
func statusPage(job *weir.Job) http.Handler { return ui.Handler() }

// serveStatus starts the --http listener of job on addr: /metrics, the
// REST status (/api/...) and the page at /.
func serveStatus(addr string, job *weir.Job) (*obs.Server, error) {
	return obs.Serve(addr, obs.NewHandler(job.Status(), job.Gatherer(), statusPage(job)))
}
