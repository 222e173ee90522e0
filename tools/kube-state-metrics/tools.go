//go:build tools

// Package tools pins kube-state-metrics, which turns Deployments into the
// kube_deployment_*_replicas series of the original's "Deployment" dashboard.
package tools

import (
	_ "k8s.io/kube-state-metrics/v2"
)
