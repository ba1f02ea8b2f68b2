package admin

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// Metrics are the agent's Prometheus metrics. The request and deploy
// metrics are fed by hooks (ObserveRequest for slot.Config.Observe,
// ObserveDeploy for deploy.Config.OnFinish), so Metrics exist before the
// slots and the deployer; the per-process ones are read from the Backend at
// each scrape by the API that New registers.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	deploys        *prometheus.CounterVec
	deployDuration *prometheus.HistogramVec
	refusedConns   *prometheus.CounterVec
}

// NewMetrics makes the registry with the Go runtime's and the agent
// process's standard metrics, the hooks' metrics and the reaped orphans.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slotagent_slot_requests_total",
			Help: "Requests proxied to a slot's app, by status code and its class (2xx…); a WebSocket upgrade is a 101.",
		}, []string{"slot", "code", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slotagent_slot_request_duration_seconds",
			Help: "Time from a request's arrival to its response header, for requests proxied to a slot's app (streams and WebSockets are timed to their header).",
			// From a loopback hit to a slow page; the app's errors and
			// the unavailable page land in the first buckets.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"slot"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slotagent_deploys_total",
			Help: "Deploys that ended, by slot, trigger (deploy, env, rollback) and result (succeeded, failed, canceled).",
		}, []string{"slot", "trigger", "result"}),
		deployDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slotagent_deploy_duration_seconds",
			Help:    "Duration of the deploys that ended, by trigger and result.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800},
		}, []string{"trigger", "result"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slotagent_slot_connections_refused_total",
			Help: "Client connections a slot port closed as soon as it accepted them, because it already served max_conns_per_slot.",
		}, []string{"slot"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.deploys, m.deployDuration, m.refusedConns,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "slotagent_reaped_orphans_total",
			Help: "Exits of processes the agent reaped without having started them (re-parented grandchildren).",
		}, func() float64 { return float64(reaper.Orphans()) }),
	)
	return m
}

// ObserveRequest counts one request proxied to slot's app; it is the
// slots' slot.Config.Observe.
func (m *Metrics) ObserveRequest(slot string, code int, d time.Duration) {
	m.requests.WithLabelValues(slot, strconv.Itoa(code), strconv.Itoa(code/100)+"xx").Inc()
	m.latency.WithLabelValues(slot).Observe(d.Seconds())
}

// ObserveRefusedConn counts a connection slot refused over its cap; it is
// the slots' slot.Config.Refused.
func (m *Metrics) ObserveRefusedConn(slot string) { m.refusedConns.WithLabelValues(slot).Inc() }

// ObserveDeploy counts a deploy that ended; it is deploy.Config.OnFinish.
func (m *Metrics) ObserveDeploy(rec deploy.Record) {
	m.deploys.WithLabelValues(rec.Slot, string(rec.Trigger), string(rec.Status)).Inc()
	if !rec.FinishedAt.IsZero() {
		m.deployDuration.WithLabelValues(string(rec.Trigger), string(rec.Status)).Observe(rec.FinishedAt.Sub(rec.CreatedAt).Seconds())
	}
}

// metricsRoutes serves m, with the processes read from the Backend at
// each scrape.
func (a *API) metricsRoutes(m *Metrics) {
	m.reg.MustRegister(processCollector{a})
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// processCollector describes the rows of GET /api/processes at each scrape.
type processCollector struct{ a *API }

var (
	processLabels = []string{"process", "slot"}
	upDesc        = prometheus.NewDesc("slotagent_process_up", "1 when the process is online (a slot's placeholder is the agent's, and online), else 0.", processLabels, nil)
	restartDesc   = prometheus.NewDesc("slotagent_process_restarts_total", "Restarts of the process by the supervisor; a new release starts again from 0.", processLabels, nil)
	cpuDesc       = prometheus.NewDesc("slotagent_process_cpu_percent", "CPU use of a supervised process and its children, in percent of one core (the agent's own is process_cpu_seconds_total).", processLabels, nil)
	rssDesc       = prometheus.NewDesc("slotagent_process_resident_memory_bytes", "RSS of a supervised process and its children (the agent's own is process_resident_memory_bytes).", processLabels, nil)
	slotDesc      = prometheus.NewDesc("slotagent_slot_info", "1 for each slot, with what it serves (type placeholder or app) and its release.", []string{"slot", "type", "release"}, nil)
)

// Describe sends the descriptions of the per-process metrics.
func (c processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, restartDesc, cpuDesc, rssDesc, slotDesc} {
		ch <- d
	}
}

// Collect reads the processes and slots from the Backend.
func (c processCollector) Collect(ch chan<- prometheus.Metric) {
	for _, row := range c.a.processList().Processes {
		up := 0.0
		if row.Status == string(supervisor.Online) {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, row.Name, row.Slot)
		ch <- prometheus.MustNewConstMetric(restartDesc, prometheus.CounterValue, float64(row.Restarts), row.Name, row.Slot)
		if row.Type == "admin" || row.Type == "placeholder" || row.Type == "static" {
			continue // the agent itself, in the standard process_* metrics
		}
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.GaugeValue, row.CPU, row.Name, row.Slot)
		ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(row.Memory), row.Name, row.Slot)
	}
	for _, s := range c.a.b.Slots() {
		ch <- prometheus.MustNewConstMetric(slotDesc, prometheus.GaugeValue, 1, s.Name, s.Type, s.Release)
	}
}
