"""`python -m infra.render`: the Namespace and Knative Service of a stack as YAML, for kubectl.

    python -m infra.render [--stack bosun | --config FILE] [--image REF] | kubectl apply -f -

Built by the same functions as the Pulumi program, from Pulumi.yaml's defaults and
Pulumi.<stack>.yaml (or FILE, in the same format). With imageBuild true the image is
REPOSITORY:latest unless --image is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from infra import manifest
from infra.config import ConfigError, file_values, parse, stack_values


def render(values: dict[str, Any], image: str | None = None) -> str:
    """YAML documents: the Namespace (unless an existing one is used) and the Knative Service."""
    config = parse(values)
    ref = image or (f"{config.image.repository}:latest" if config.image.build else config.image.ref)
    documents = [manifest.service(config, ref)]
    if config.create_namespace:
        documents.insert(0, manifest.namespace(config))
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a stack's manifests as YAML.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stack", default="bosun", help="stack name (Pulumi.STACK.yaml)")
    source.add_argument("--config", type=Path, help="a file with a config: map, as a stack file")
    parser.add_argument("--image", help="image reference to deploy, ideally repo@sha256:...")
    args = parser.parse_args(argv)
    try:
        values = file_values(args.config) if args.config else stack_values(args.stack)
        sys.stdout.write(render(values, args.image))
    except ConfigError as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
