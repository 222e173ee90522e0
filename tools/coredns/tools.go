//go:build tools

// Package tools pins CoreDNS, the local cluster's DNS: its kubernetes plugin answers for
// Services and pods under cluster.local, as kube-dns does in a cluster.
package tools

import (
	_ "github.com/coredns/coredns"
)
