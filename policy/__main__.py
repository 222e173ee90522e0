"""CrossGuard policy pack: `pulumi preview --policy-pack policy`."""

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy

from policy.checks import RULES

PolicyPack(
    name="myfirstserverlessapp-policy",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(name=name, description=description, validate=validate)
        for name, (description, validate) in RULES.items()
    ],
)
