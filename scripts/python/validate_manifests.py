"""Validates the Kubernetes and KServe objects under deploy/ (run by scripts/validate-manifests.sh).

Every YAML document under the given folder is checked by the schema of its kind, strictly:
an unknown or misspelt field is an error, as is a value of the wrong type.

- Kubernetes' own kinds (apps/v1 Deployment, v1 Service, ...): kubernetes-validate's strict
  JSON schemas, for each Kubernetes version given with --kubernetes-version.
- KServe's kinds (serving.kserve.io/*): the `kserve` package's models (V1alpha1ClusterServingRuntime,
  V1beta1InferenceService, ...), with the Kubernetes models they embed (V1Container, ...).
  Each object is built field by field, an unknown key failing with its path; then the built
  object, serialized again by kserve's ApiClient, must equal the input.
- Prometheus Operator kinds (monitoring.coreos.com/v1): the cloudcoil models of the
  operator's CRDs, validated and dumped again; the dump must equal the input.

Then cross-object checks: an InferenceService's runtime exists here and supports its model
format and protocol; every `cohost serve`/`cohost gen` flag in a container's args is one the
CLI defines (its `ServeArgs`/`GenArgs` structs under server/src); a KServe runtime serves
/mnt/models, except a ModelMesh one (`multiModel: true`), whose `grpcEndpoint` and
`grpcDataEndpoint` ports must be the container's --modelmesh-port and --grpc-port.

--self-test copies the folder, breaks it one way at a time (misspelt fields, a flag cohost
does not have) and requires each broken copy to fail.
"""

from __future__ import annotations

import argparse
import difflib
import pathlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import yaml

KSERVE_GROUP = "serving.kserve.io"
MONITORING_GROUP = "monitoring.coreos.com"
PROTOCOL_VERSIONS = {"v1", "v2", "grpc-v1", "grpc-v2"}
KSERVE_MODEL_DIR = "/mnt/models"

LIST_TYPE = re.compile(r"^[lL]ist\[(.*)\]$")
DICT_TYPE = re.compile(r"^(?:dict\(([^,]*), (.*)\)|Dict\[([^,]*), (.*)\])$")
PRIMITIVES = {"str": str, "int": int, "float": float, "bool": bool}
# Type names the generated models use without defining a class for them.
TYPE_ALIASES = {
    "ResourceQuantity": "str",
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
}


@dataclass
class Document:
    """One YAML document: where it came from and what it holds."""

    file: pathlib.Path
    index: int
    data: dict

    @property
    def label(self) -> str:
        name = (self.data.get("metadata") or {}).get("name", "?")
        return f"{self.file}#{self.index} {self.data.get('kind')}/{name}"


@dataclass
class Report:
    """What validation found: one line per object checked, one per error."""

    checked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load_documents(root: pathlib.Path) -> tuple[list[Document], list[str]]:
    """Every non-empty YAML document under root, and the files that could not be parsed."""
    docs, errors = [], []
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            errors.append(f"{path}: not YAML: {e}")
            continue
        for i, data in enumerate(loaded):
            if data is None:
                continue
            if not isinstance(data, dict) or "apiVersion" not in data or "kind" not in data:
                errors.append(f"{path}#{i}: not a Kubernetes object (no apiVersion/kind)")
                continue
            docs.append(Document(path, i, data))
    return docs, errors


def group_version(doc: Document) -> tuple[str, str]:
    """The API group ('' for core) and version of a document."""
    api = doc.data["apiVersion"]
    group, _, version = api.rpartition("/")
    return group, version


# --- Kubernetes kinds: kubernetes-validate ------------------------------------------------


def validate_kubernetes(doc: Document, versions: list[str]) -> list[str]:
    """Strict JSON-schema validation of a built-in kind against each Kubernetes version."""
    import kubernetes_validate

    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc.data, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"{doc.label}: Kubernetes {version}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{doc.label}: no schema for {doc.data['apiVersion']} {doc.data['kind']} "
                f"in Kubernetes {version} (nothing here validates this kind)"
            )
    return errors


# --- KServe kinds: the kserve package's models ---------------------------------------------


def model_class(type_name: str):
    """The generated model class for a type name: KServe's first, then Kubernetes'."""
    import kserve.models
    import kubernetes.client.models

    return getattr(kserve.models, type_name, None) or getattr(
        kubernetes.client.models, type_name, None
    )


def build(data: Any, type_name: str, path: str, errors: list[str]) -> Any:
    """Builds the model object of `type_name` from `data`, appending one error per unknown
    field, wrong type or rejected value (with its path)."""
    if data is None:
        return None
    if m := LIST_TYPE.match(type_name):
        if not isinstance(data, list):
            errors.append(f"{path}: expected a list, found {type(data).__name__}")
            return None
        return [build(v, m.group(1), f"{path}[{i}]", errors) for i, v in enumerate(data)]
    if m := DICT_TYPE.match(type_name):
        if not isinstance(data, dict):
            errors.append(f"{path}: expected a map, found {type(data).__name__}")
            return None
        value_type = m.group(2) or m.group(4)
        return {k: build(v, value_type, f"{path}.{k}", errors) for k, v in data.items()}
    type_name = TYPE_ALIASES.get(type_name, type_name)
    if type_name in PRIMITIVES:
        expected = PRIMITIVES[type_name]
        ok = isinstance(data, expected) and not (expected is not bool and isinstance(data, bool))
        if expected is float:
            ok = isinstance(data, (int, float)) and not isinstance(data, bool)
        if not ok:
            hint = " (quote it)" if expected is str else ""
            errors.append(f"{path}: expected {type_name}, found {type(data).__name__} {data!r}{hint}")
        return data
    if type_name in ("object", "datetime", "date"):
        return data
    klass = model_class(type_name)
    if klass is None:
        errors.append(f"{path}: no model class for type {type_name}")
        return None
    if not isinstance(data, dict):
        errors.append(f"{path}: expected a {type_name} map, found {type(data).__name__}")
        return None
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        attr = by_key.get(key)
        if attr is None:
            lowered = {k.lower(): k for k in by_key}
            close = difflib.get_close_matches(str(key).lower(), list(lowered), n=1)
            hint = f" (did you mean {lowered[close[0]]}?)" if close else ""
            errors.append(f"{path}.{key}: unknown field of {type_name}{hint}")
            continue
        kwargs[attr] = build(value, klass.openapi_types[attr], f"{path}.{key}", errors)
    try:
        return klass(**kwargs)
    except (TypeError, ValueError) as e:
        errors.append(f"{path}: {type_name} rejects this value: {e}")
        return None


def differences(a: Any, b: Any, path: str) -> list[str]:
    """Where the input `a` is not carried by its round trip `b`: a key dropped (the models
    do not know it) or a value changed. Keys the round trip adds are the models' defaults
    (e.g. an empty `name`), not something the input said, so they are not differences."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(a, key=str):
            if k not in b:
                out.append(f"{path}.{k}: dropped by the round trip (unknown field?)")
            else:
                out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items in, {len(b)} after the round trip"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if a != b or type(a) is not type(b):
        return [f"{path}: {a!r} in, {b!r} after the round trip"]
    return []


def validate_kserve(doc: Document) -> list[str]:
    """Builds a KServe object with the kserve models; its round trip must carry the input."""
    from kserve.api_client import ApiClient

    _, version = group_version(doc)
    type_name = f"V{version[1:]}{doc.data['kind']}"
    if model_class(type_name) is None:
        return [f"{doc.label}: the kserve package has no model {type_name}"]
    errors: list[str] = []
    obj = build(doc.data, type_name, "", errors)
    if obj is not None and not errors:
        again = ApiClient().sanitize_for_serialization(obj)
        errors += differences(doc.data, again, "")
    return [f"{doc.label}: {e.lstrip('.')}" for e in errors]


# --- Prometheus Operator kinds: cloudcoil's models ------------------------------------------


def validate_monitoring(doc: Document) -> list[str]:
    """Validates a Prometheus Operator object with the CRD models; its round trip must carry
    the input (the models ignore unknown fields, so the round trip is what catches them)."""
    import pydantic
    from cloudcoil.models.prometheus_operator import v1

    _, version = group_version(doc)
    module = v1 if version == "v1" else None
    klass = getattr(module, doc.data["kind"], None) if module else None
    if klass is None:
        return [f"{doc.label}: no model for {doc.data['apiVersion']} {doc.data['kind']}"]
    try:
        obj = klass.model_validate(doc.data)
    except pydantic.ValidationError as e:
        return [
            f"{doc.label}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors()
        ]
    again = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"{doc.label}: {d.lstrip('.')}" for d in differences(doc.data, again, "")]


# --- Cross-object checks -------------------------------------------------------------------


def rust_structs(repo: pathlib.Path) -> dict[str, list[tuple[str, str, str]]]:
    """Every `pub struct` under server/src: its fields as (name, type, attributes before it)."""
    structs: dict[str, list[tuple[str, str, str]]] = {}
    for path in sorted((repo / "server" / "src").rglob("*.rs")):
        for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", path.read_text(), re.S):
            fields, attrs = [], ""
            for line in m.group(2).splitlines():
                line = line.strip()
                if line.startswith("#["):
                    attrs += line
                elif f := re.match(r"pub (\w+):\s*([^,]+),?$", line):
                    fields.append((f.group(1), f.group(2).strip(), attrs))
                    attrs = ""
            structs[m.group(1)] = fields
    return structs


def cli_flags(repo: pathlib.Path) -> dict[str, set[str]]:
    """The long flags of `cohost serve` and `cohost gen`, read off the clap structs
    (`ServeArgs`, `GenArgs`, and the structs they flatten)."""
    structs = rust_structs(repo)

    def flags_of(struct: str) -> set[str]:
        if struct not in structs:
            raise SystemExit(f"cannot find `pub struct {struct}` under server/src")
        out = set()
        for name, type_name, attrs in structs[struct]:
            if "flatten" in attrs:
                out |= flags_of(re.sub(r"^Box<(.*)>$", r"\1", type_name))
            elif m := re.search(r'long\s*=\s*"([^"]+)"', attrs):
                out.add("--" + m.group(1))
            else:
                out.add("--" + name.replace("_", "-"))
        return out

    return {"serve": flags_of("ServeArgs"), "gen": flags_of("GenArgs")}


def containers_of(doc: Document) -> list[dict]:
    """The containers an object declares (pod templates, KServe runtimes and predictors)."""
    spec = doc.data.get("spec") or {}
    kind = doc.data["kind"]
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        return list(spec.get("containers") or [])
    if kind == "InferenceService":
        predictor = spec.get("predictor") or {}
        return [predictor["model"]] if "model" in predictor else []
    pod = (spec.get("template") or {}).get("spec") or {}
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


def check_cohost_args(doc: Document, flags: dict[str, set[str]]) -> list[str]:
    """Every flag a cohost container passes exists in the CLI."""
    errors = []
    for c in containers_of(doc):
        args = c.get("args") or []
        image = str(c.get("image", ""))
        if not args or args[0] not in flags or "cohost" not in image:
            continue
        for a in args[1:]:
            if a.startswith("--"):
                name = a.split("=", 1)[0]
                if name not in flags[args[0]] | {"--help"}:
                    errors.append(
                        f"{doc.label}: container {c.get('name')}: `cohost {args[0]}` has no flag {name}"
                    )
    return errors


def check_kserve_links(docs: list[Document]) -> list[str]:
    """InferenceServices name runtimes that exist here and fit them; runtimes serve /mnt/models."""
    errors = []
    runtimes = {
        d.data["metadata"]["name"]: d
        for d in docs
        if d.data["kind"] in ("ServingRuntime", "ClusterServingRuntime")
    }
    for name, rt in runtimes.items():
        spec = rt.data.get("spec") or {}
        bad = set(spec.get("protocolVersions") or []) - PROTOCOL_VERSIONS
        if bad:
            errors.append(f"{rt.label}: unknown protocolVersions {sorted(bad)}")
        args = ((spec.get("containers") or [{}])[0]).get("args") or []
        if spec.get("multiModel"):
            # ModelMesh: models arrive through the SPI on grpcEndpoint, inference on
            # grpcDataEndpoint; both must be the ports the container serves.
            for field_name, flag in (("grpcEndpoint", "--modelmesh-port"), ("grpcDataEndpoint", "--grpc-port")):
                want = f"{flag}={str(spec.get(field_name, '')).removeprefix('port:')}"
                if want not in args:
                    errors.append(f"{rt.label}: {field_name} {spec.get(field_name)!r} is not the container's {flag}")
        elif f"--model-repository={KSERVE_MODEL_DIR}" not in args:
            errors.append(f"{rt.label}: the container does not serve {KSERVE_MODEL_DIR}")
    for d in docs:
        if d.data["kind"] != "InferenceService":
            continue
        model = ((d.data.get("spec") or {}).get("predictor") or {}).get("model") or {}
        annotations = (d.data.get("metadata") or {}).get("annotations") or {}
        modelmesh = annotations.get("serving.kserve.io/deploymentMode") == "ModelMesh"
        fmt = (model.get("modelFormat") or {}).get("name")
        wanted = model.get("runtime")
        candidates = (
            [runtimes[wanted]] if wanted in runtimes else [] if wanted else list(runtimes.values())
        )
        if wanted and not candidates:
            errors.append(f"{d.label}: runtime {wanted} is not defined under this folder")
            continue
        # ModelMesh InferenceServices run on multi-model runtimes only, the others never.
        candidates = [
            rt for rt in candidates if bool((rt.data.get("spec") or {}).get("multiModel")) == modelmesh
        ]
        if wanted and not candidates:
            mode = "ModelMesh" if modelmesh else "single-model"
            errors.append(f"{d.label}: runtime {wanted} does not serve {mode} InferenceServices (multiModel)")
            continue
        fits = []
        for rt in candidates:
            spec = rt.data.get("spec") or {}
            formats = {
                f.get("name"): f for f in spec.get("supportedModelFormats") or []
            }
            if fmt in formats and (wanted or formats[fmt].get("autoSelect")):
                fits.append(rt)
        if not fits:
            errors.append(f"{d.label}: no runtime here supports model format {fmt!r}")
            continue
        protocol = model.get("protocolVersion", "v1")
        for rt in fits:
            if protocol not in (rt.data["spec"].get("protocolVersions") or []):
                errors.append(f"{d.label}: runtime {rt.data['metadata']['name']} does not speak {protocol}")
    return errors


# --- Driver --------------------------------------------------------------------------------


def validate_tree(root: pathlib.Path, repo: pathlib.Path, versions: list[str]) -> Report:
    """Validates every object under root; `repo` is the repository holding server/src."""
    report = Report()
    docs, report.errors = load_documents(root)
    if not docs:
        report.errors.append(f"{root}: no Kubernetes objects found")
    flags = cli_flags(repo)
    for doc in docs:
        group, _ = group_version(doc)
        if group == KSERVE_GROUP:
            errors, how = validate_kserve(doc), "kserve models"
        elif group == MONITORING_GROUP:
            errors, how = validate_monitoring(doc), "prometheus-operator models"
        else:
            errors, how = validate_kubernetes(doc, versions), f"Kubernetes {', '.join(versions)}"
        errors += check_cohost_args(doc, flags)
        report.errors += errors
        report.checked.append(f"{'FAIL' if errors else 'ok  '} {doc.label} ({how})")
    report.errors += check_kserve_links(docs)
    return report


# Each self-test breaks one file of a copy of the folder: (file, text, replacement, what the
# error must mention).
BREAKAGES = [
    ("kserve/cluster-serving-runtime.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"),
    ("kserve/cluster-serving-runtime.yaml", "autoSelect: true", "autoselect: true", "autoselect"),
    ("kserve/inference-service.yaml", "storageUri:", "storageURI:", "storageURI"),
    ("kserve/inference-service.yaml", "runtime: cohost", "runtime: cohost-cpu", "cohost-cpu"),
    ("kserve/inference-service.yaml", "minReplicas: 1", 'minReplicas: "1"', "minReplicas"),
    (
        "k8s/deployment.yaml",
        "terminationGracePeriodSeconds:",
        "terminationGracePeriodSecond:",
        "terminationGracePeriodSecond",
    ),
    ("k8s/deployment.yaml", "containerPort: 8000", 'containerPort: "8000"', "8000"),
    ("k8s/service.yaml", "targetPort: grpc", "targetport: grpc", "targetport"),
    ("k8s/service-monitor.yaml", "scrapeTimeout:", "scrapeTimout:", "scrapeTimout"),
    ("k8s/deployment.yaml", "- --device=cpu", "- --drain-deadline=30", "--drain-deadline"),
    (
        "kserve/serving-runtime-modelmesh.yaml",
        "- --modelmesh-port=8085",
        "- --modelmesh-port=8086",
        "grpcEndpoint",
    ),
    ("kserve/serving-runtime-modelmesh.yaml", "multiModel: true", "multimodel: true", "multimodel"),
]


def self_test(root: pathlib.Path, repo: pathlib.Path, versions: list[str]) -> int:
    """Validates broken copies of root, one breakage each; each must fail, and name it."""
    failures = 0
    for rel, old, new, mention in BREAKAGES:
        with tempfile.TemporaryDirectory(prefix="cohost-manifests.") as tmp:
            copy = pathlib.Path(tmp) / "deploy"
            shutil.copytree(root, copy)
            target = copy / rel
            text = target.read_text()
            if old not in text:
                print(f"self-test: {rel} no longer contains {old!r}: update BREAKAGES")
                failures += 1
                continue
            target.write_text(text.replace(old, new, 1))
            report = validate_tree(copy, repo, versions)
            named = [e for e in report.errors if mention in e]
            if named:
                print(f"self-test ok: {rel}: {old!r} -> {new!r} rejected: {named[0].split(': ', 1)[1]}")
            else:
                failures += 1
                print(f"self-test FAILED: {rel}: {old!r} -> {new!r} was not rejected "
                      f"(errors: {report.errors or 'none'})")
    print(f"self-test: {len(BREAKAGES) - failures} of {len(BREAKAGES)} broken copies rejected")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path, help="folder of manifests (deploy/)")
    parser.add_argument("--repo", type=pathlib.Path, default=pathlib.Path.cwd(),
                        help="repository root, for the cohost CLI's flags (server/src)")
    parser.add_argument("--kubernetes-version", action="append", dest="versions",
                        help="Kubernetes version to validate against (repeatable)")
    parser.add_argument("--self-test", action="store_true",
                        help="require broken copies of the folder to fail instead")
    args = parser.parse_args()
    versions = args.versions or ["1.30.0", "1.37.0"]
    if args.self_test:
        return self_test(args.folder, args.repo, versions)
    report = validate_tree(args.folder, args.repo, versions)
    for line in report.checked:
        print(line)
    for e in report.errors:
        print(f"error: {e}")
    print(f"manifests: {len(report.checked)} objects checked, {len(report.errors)} errors")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
