"""The Pulumi program: typed config -> one component -> stack outputs."""

from __future__ import annotations

import pulumi

from infra.component import ServerlessApp
from infra.config import ConfigError, from_pulumi

try:
    config = from_pulumi()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

app = ServerlessApp(
    config.service_name,
    config,
    registry_password=pulumi.Config().get_secret("registryPassword") or None,
)
pulumi.export("ingressHost", app.ingress_host)
pulumi.export("routeDomain", app.route_domain)
pulumi.export("url", app.url)
pulumi.export("imageRef", app.image_ref)
pulumi.export("curl", app.curl)
