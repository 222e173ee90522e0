//go:build tools

// Package tools pins the image-building tools built into build/bin by `make tools`: the
// docker-build provider, the buildx CLI plugin (it creates the builder the provider uses) and
// BuildKit's daemon (the builder itself).
package tools

import (
	_ "github.com/docker/buildx/cmd/buildx"
	_ "github.com/moby/buildkit/cmd/buildkitd"
	_ "github.com/pulumi/pulumi-docker-build/provider/cmd/pulumi-resource-docker-build"
)
