"""Entry point CrossGuard runs: ``pulumi preview --policy-pack policies``.

The CLI starts this file with policies/ as the working directory; the rules are
imported as the ``policies`` package from the repository root so the tests and
``groundwork plan`` use exactly the same code. ``PolicyPack(...)`` starts the gRPC
server and blocks, which is why nothing else lives here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import PACK_DESCRIPTION, PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description=PACK_DESCRIPTION,
)
