//go:build tools

// Package tools pins the Kubernetes commands the local cluster runs: the API server, the
// controller manager, the scheduler, kube-proxy, the kubelet, kubectl, and etcd at the version
// Kubernetes itself requires.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
