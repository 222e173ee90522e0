"""`python -m infra.render`: the Namespace and Knative Service of a stack as YAML, for kubectl.

    python -m infra.render [--stack bosun] [--image REF] | kubectl apply -f -

Built by the same functions as the Pulumi program, from Pulumi.yaml's defaults and
Pulumi.<stack>.yaml. With imageBuild true the image is REPOSITORY:latest unless --image is given.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from infra import manifest
from infra.config import ConfigError, parse, stack_values


def render(stack: str, image: str | None = None) -> str:
    config = parse(stack_values(stack))
    ref = image or (f"{config.image.repository}:latest" if config.image.build else config.image.ref)
    documents = [manifest.service(config, ref)]
    if config.create_namespace:
        documents.insert(0, manifest.namespace(config))
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a stack's manifests as YAML.")
    parser.add_argument("--stack", default="bosun", help="stack name (Pulumi.STACK.yaml)")
    parser.add_argument("--image", help="image reference to deploy, ideally repo@sha256:...")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.stack, args.image))
    except ConfigError as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
