"""Service specs as code: a short spec becomes namespaces, network policy, budgets, SLOs, secrets,
dashboards and alerts in the GitOps repository, with guardrails (policies as data) on the way.

- `model`: the spec, and its YAML and Terraform forms;
- `policy`: the policy engine, and `policies/default.yaml`;
- `manifests`: what a spec becomes;
- `provision`: plan and apply, one commit per spec file.
"""

from .model import Spec, parse_documents, parse_specs
from .policy import Finding, PolicySet, load_policies
from .provision import ProvisionResult, SpecParts, Submitter, provision

__all__ = [
    "Finding",
    "PolicySet",
    "ProvisionResult",
    "Spec",
    "SpecParts",
    "Submitter",
    "load_policies",
    "parse_documents",
    "parse_specs",
    "provision",
]
