//go:build tools

// Package tools pins the Pulumi engine built into build/bin by `make tools`.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
