//go:build tools

// Package tools pins the Knative Serving commands the local control plane runs as processes. The
// CRDs and config maps applied to the cluster are read from the same module at run time.
package tools

import (
	_ "knative.dev/serving/cmd/activator"
	_ "knative.dev/serving/cmd/autoscaler"
	_ "knative.dev/serving/cmd/controller"
	_ "knative.dev/serving/cmd/queue"
	_ "knative.dev/serving/cmd/webhook"
)
