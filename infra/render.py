"""`python -m infra.render`: the Namespace and Knative Service of a stack as YAML, for kubectl
(and the dashboard's ConfigMap when the stack asks for it).

    python -m infra.render [--stack bosun] [--config FILE] [--image REF] | kubectl apply -f -

Built by the same functions as the Pulumi program, from Pulumi.yaml's defaults and
Pulumi.<stack>.yaml (or FILE, in the same format). The image is --image, else what the program
would deploy: imageRef, or with imageBuild true the tag the program pushes (REPOSITORY:STACK),
which is not pinned by digest; that is said on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from infra import manifest, rules
from infra.config import ConfigError, file_values, parse, stack_values


def image_for(values: dict[str, Any], stack: str, image: str | None = None) -> str:
    """The image to render: ``image``, imageRef, or the tag the program pushes for ``stack``."""
    config = parse(values)
    if image:
        return image
    return manifest.pushed_tag(config, stack) if config.image.build else config.image.ref


def render(values: dict[str, Any], image: str) -> str:
    """YAML documents: the Namespace (unless an existing one is used), the Knative Service and,
    with grafanaDashboard, the dashboard's ConfigMap."""
    config = parse(values)
    documents = [manifest.service(config, image)]
    if config.create_namespace:
        documents.insert(0, manifest.namespace(config))
    if config.grafana_dashboard:
        documents.append(manifest.dashboard_configmap(config))
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a stack's manifests as YAML.")
    parser.add_argument("--stack", default="bosun", help="stack name (Pulumi.STACK.yaml)")
    parser.add_argument("--config", type=Path, help="a file with a config: map, as a stack file")
    parser.add_argument("--image", help="image reference to deploy, repo@sha256:...")
    args = parser.parse_args(argv)
    if args.image is not None and not rules.is_pinned_image(args.image):
        print(f"render: --image {args.image!r}: not allowed; allowed: {rules.PINNED_IMAGE_RULE}",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        values = file_values(args.config) if args.config else stack_values(args.stack)
        image = image_for(values, args.stack, args.image)
        sys.stdout.write(render(values, image))
    except ConfigError as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    if not rules.is_pinned_image(image):
        print(
            f"render: note: image {image} is not pinned by digest (the policy pack refuses it); "
            "pass --image REPOSITORY@sha256:... (pulumi stack output imageRef)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
