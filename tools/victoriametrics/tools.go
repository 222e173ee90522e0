//go:build tools

// Package tools pins VictoriaMetrics single-node, the local cluster's metrics store: it scrapes
// Knative's components, queue-proxy and the app, and serves the Prometheus query API and vmui.
package tools

import (
	_ "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics"
)
