#!/usr/bin/env python3
"""A stand-in for the ``pulumi`` CLI, put on PATH by the delivery tests.

It knows the real program's resource graph (URNs, parents, providers, dependencies) from
a JSON file the test writes after running the program under Pulumi's mocks, and keeps a
state file. It enforces the engine rule that broke the documented first deploy: a
targeted ``up`` may not create a resource whose parent or dependency is neither targeted
nor already in the state ("untargeted create"; providers and the root stack are
targeted implicitly; pulumi/pulumi pkg/resource/deploy/step_generator.go).

Environment:
  FAKE_PULUMI_DIR   directory with graph.json (resources) and state.json (created URNs)
                    and where calls.log records every invocation
  FAKE_PULUMI_FAIL  "up" makes `pulumi up` (untargeted) fail after recording it
  FAKE_PULUMI_AFTER_UP  a Python script run after a successful untargeted `up`, with the
                    deployed image as its argument (what the cloud does meanwhile)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT_TYPE = "pulumi:pulumi:Stack"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def implicit(resource: dict) -> bool:
    return resource["type"] == ROOT_TYPE or resource["type"].startswith("pulumi:providers:")


def main(argv: list[str]) -> int:
    base = Path(os.environ["FAKE_PULUMI_DIR"])
    with (base / "calls.log").open("a") as log:
        log.write(" ".join(argv) + "\n")
    graph = json.loads((base / "graph.json").read_text())
    resources = {r["urn"]: r for r in graph["resources"]}
    state_file = base / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"created": []}
    created = set(state["created"])
    command = argv[:2]
    if argv[:1] == ["login"]:
        return 0
    if command == ["stack", "select"]:
        return 0
    if command == ["stack", "ls"]:
        listing = base / "stacks.json"  # what the backend holds, written by the test
        print(listing.read_text() if listing.exists() else "[]")
        return 0
    if argv[:1] == ["destroy"]:
        state_file.write_text(json.dumps({"created": [], "outputs": {}}))
        return 0
    if command == ["stack", "output"]:
        print(json.dumps(state.get("outputs", {})))
        return 0
    if command == ["stack", "export"]:
        exported = [
            {
                "urn": urn,
                "type": resources[urn]["type"],
                "outputs": resources[urn].get("outputs", {}),
            }
            for urn in sorted(created)
        ]
        print(json.dumps({"version": 3, "deployment": {"resources": exported}}))
        return 0
    if argv[:1] == ["preview"] and "--json" in argv:
        steps = [
            {
                "op": "same" if urn in created else "create",
                "urn": urn,
                "newState": {
                    "type": r["type"],
                    "parent": r.get("parent", ""),
                    "dependencies": r.get("dependencies", []),
                },
            }
            for urn, r in resources.items()
        ]
        print(json.dumps({"steps": steps}))
        return 0
    if argv[:1] == ["up"]:
        targets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--target"]
        excludes = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--exclude"}
        if excludes:
            unknown = sorted(excludes - set(resources))
            if unknown:
                print(f"error: no resource named {unknown[0]}", file=sys.stderr)
                return 255
            if "--exclude-dependents" in argv:
                changed = True
                while changed:  # everything whose parent or a dependency is excluded
                    changed = False
                    for urn, r in resources.items():
                        needs = {r.get("parent", ""), *r.get("dependencies", [])}
                        if urn not in excludes and needs & excludes:
                            excludes.add(urn)
                            changed = True
            created |= set(resources) - excludes
            # Exports of excluded resources stay unknown.
            state["outputs"] = {
                key: (UNKNOWN if key.endswith("_service_name") else value)
                for key, value in graph["outputs"].items()
            }
            state["excluded"] = sorted(excludes)
        elif not targets:
            if os.environ.get("FAKE_PULUMI_FAIL") == "up":
                print("error: update failed", file=sys.stderr)
                return 255
            created |= set(resources)
            state["outputs"] = dict(graph["outputs"])
            configs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--config"]
            for item in configs:
                key, _, value = item.partition("=")
                if key == "groundwork:imageUri":
                    state["outputs"]["deployed_image"] = value
            hook = os.environ.get("FAKE_PULUMI_AFTER_UP")
            if hook:
                import subprocess

                image = state["outputs"].get("deployed_image", "")
                subprocess.run([sys.executable, hook, image], check=True)
        else:
            unknown = [t for t in targets if t not in resources]
            if unknown:
                print(f"error: no resource named {unknown[0]}", file=sys.stderr)
                return 255
            for urn in targets:
                resource = resources[urn]
                needs = [resource.get("parent", ""), *resource.get("dependencies", [])]
                for dep in filter(None, needs):
                    if (
                        dep in created
                        or dep in targets
                        or implicit(resources.get(dep, {"type": ROOT_TYPE}))
                    ):
                        continue
                    print(
                        f"error: Resource '{urn}' depends on '{dep}' which was was not "
                        "specified in --target list.",
                        file=sys.stderr,
                    )
                    print("error: untargeted create", file=sys.stderr)
                    return 255
            created |= set(targets) | {u for u, r in resources.items() if implicit(r)}
            # Exports of resources the targeted update skipped stay unknown.
            state["outputs"] = {
                key: value
                for key, value in graph["outputs"].items()
                if key in graph.get("bootstrap_outputs", [])
            } | {"cluster_name": UNKNOWN}
        state["created"] = sorted(created)
        state_file.write_text(json.dumps(state))
        return 0
    print(f"fake pulumi: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
