//go:build tools

// Package tools pins the Kubernetes resource provider that `make tools` builds and installs as a
// Pulumi plugin. Its schema is embedded the way the provider's Makefile does (generate.go).
package tools

import _ "github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"
