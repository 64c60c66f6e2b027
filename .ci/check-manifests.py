"""Checks deploy/kubernetes offline: every manifest against the Kubernetes API schemas, and the
gateway's TOML in the ConfigMap against the gateway itself.

    python .ci/check-manifests.py DIR KUBERNETES_VERSION... [--gateway BINARY]

- kustomization.yaml must list every other YAML file of DIR and only those, so that nothing is
  left out of `kubectl apply -k`.
- Each document of each listed file is validated strictly (unknown fields are errors) against the
  schemas that the kubernetes-validate package bundles, for each version given. A kind with no
  schema is an error too (kubernetes-validate's command line only warns).
- When kubectl is installed, `kubectl kustomize DIR` must render, and its output is validated the
  same way (that checks the kustomization itself: namespace, images).
- With --gateway, the TOML of every ConfigMap key ending in .toml is handed to
  `BINARY serve --config`, which must start listening (then it is stopped): the configuration
  keys, values and auth section are the ones the gateway accepts.

Exit status 0 when everything passed. Needs kubernetes-validate (and PyYAML, its dependency).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubernetes_validate
import yaml

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAILED: {message}")


def validate(source: str, documents: list[dict], versions: list[str]) -> None:
    for doc in documents:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                print(f"ok: {source}: {name} (Kubernetes {version}, strict)")
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                fail(f"{source}: {name} (Kubernetes {version}): {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(f"{source}: {name}: no schema for apiVersion {doc.get('apiVersion')} "
                     f"kind {doc.get('kind')} in Kubernetes {version}")


def check_gateway_config(gateway: str, source: str, toml: str) -> None:
    """The gateway must start with this file: unknown keys and bad values stop it with status 2."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cams-flows.toml"
        config.write_text(toml)
        # A loopback port nothing listens on: STS, which a gateway with a Redis asks which
        # account it serves, is out of reach here, so the account's UID is stated instead.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CAMS_FLOWS_")},
            # Placeholders: the gateway only signs with them, and nothing is called here.
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "check-manifests",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "check-manifests",
            "ALIBABA_CLOUD_STS_ENDPOINT": f"http://127.0.0.1:{closed}",
            "CAMS_FLOWS_REDIS_ACCOUNT": "1234567890123456",
        }
        command = [gateway, "serve", "--config", str(config), "--listen", "127.0.0.1:0",
                   "--log-format", "json"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 15
        output = []
        listening = False
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if '"message":"listening"' in line:
                listening = True
                break
            if time.monotonic() > deadline:
                break
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=15)
        output.append(rest)
        if listening:
            print(f"ok: {source}: the gateway starts with this configuration")
        else:
            fail(f"{source}: the gateway does not start with this configuration "
                 f"(exit status {process.returncode}):\n{''.join(output)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("versions", nargs="+", help="Kubernetes versions, e.g. 1.30.0")
    parser.add_argument("--gateway", help="the cams-flows binary, to check the ConfigMap's TOML")
    args = parser.parse_args()

    kustomization = yaml.safe_load((args.dir / "kustomization.yaml").read_text())
    listed = list(kustomization.get("resources", []))
    present = sorted(p.name for p in args.dir.glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(listed) != present:
        fail(f"kustomization.yaml lists {sorted(listed)}, the directory holds {present}")

    documents: list[dict] = []
    for name in listed:
        path = args.dir / name
        if not path.is_file():
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        validate(name, docs, args.versions)
        documents.extend(docs)

    kubectl = shutil.which("kubectl")
    if kubectl:
        rendered = subprocess.run([kubectl, "kustomize", str(args.dir)], capture_output=True,
                                  text=True)
        if rendered.returncode != 0:
            fail(f"kubectl kustomize {args.dir}: {rendered.stderr.strip()}")
        else:
            docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
            validate("kubectl kustomize", docs, args.versions)
    else:
        print("note: no kubectl here; the rendering of kustomization.yaml was not checked")

    if args.gateway:
        for doc in documents:
            if doc.get("kind") != "ConfigMap":
                continue
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    check_gateway_config(args.gateway, f"ConfigMap {key}", value)

    print(f"manifests: {len(failures)} failed" if failures else "manifests: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
