"""A small kustomize renderer for the subset deploy/k8s uses, which the manifest checks read
(``test_kustomize_itself_renders_what_the_checks_read`` holds it to kustomize's own output).

Supports ``resources`` (files and kustomization folders), ``components`` (folders of
``kind: Component`` with their own resources and patches, applied to what the including
kustomization has gathered, before its own transformers), ``namespace``, ``labels`` (metadata
labels only), ``images``, ``replicas`` and ``patches`` with a target and JSON 6902 operations
(add / replace / remove). Any other kustomization field is refused, so a manifest can never
rely on a feature this renderer would silently skip.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images",
             "replicas", "patches"}
COMPONENT = "Component"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole",
                  "ClusterRoleBinding"}


class RenderError(Exception):
    pass


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _kustomization(folder: Path) -> dict[str, Any]:
    k = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(k) - SUPPORTED
    if unknown:
        raise RenderError(f"{folder}: unsupported kustomization fields {sorted(unknown)}")
    return k


def _resources(folder: Path, k: dict[str, Any]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        path = (folder / res).resolve()
        objs.extend(render(path) if path.is_dir() else copy.deepcopy(load_docs(path)))
    return objs


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build folder`` would print, for the supported subset."""
    k = _kustomization(folder)
    if k.get("kind") == COMPONENT:
        raise RenderError(f"{folder}: a Component is rendered only through `components`")
    objs = _resources(folder, k)
    for comp in k.get("components", []):
        path = (folder / comp).resolve()
        c = _kustomization(path)
        if c.get("kind") != COMPONENT:
            raise RenderError(f"{path}: `components` names a folder that is no Component")
        if set(c) - {"apiVersion", "kind", "resources", "patches"}:
            raise RenderError(f"{path}: a Component here holds resources and patches only")
        objs.extend(_resources(path, c))
        _patch(objs, c)
    for obj in objs:
        meta = obj.setdefault("metadata", {})
        if "namespace" in k and obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        for entry in k.get("labels", []):
            meta.setdefault("labels", {}).update(entry["pairs"])
        for image in k.get("images", []):
            _set_image(obj, image)
    for rep in k.get("replicas", []):
        hits = [o for o in objs if o["metadata"]["name"] == rep["name"]
                and o["kind"] in ("Deployment", "StatefulSet")]
        if not hits:
            raise RenderError(f"replicas: no workload named {rep['name']}")
        for o in hits:
            o["spec"]["replicas"] = rep["count"]
    _patch(objs, k)
    return objs


def _patch(objs: list[dict[str, Any]], k: dict[str, Any]) -> None:
    """Apply the kustomization's ``patches`` to ``objs``; a target matching nothing fails."""
    for patch in k.get("patches", []):
        target = patch["target"]
        hits = [o for o in objs if o["kind"] == target["kind"]
                and target.get("name", o["metadata"]["name"]) == o["metadata"]["name"]]
        if not hits:
            raise RenderError(f"patch target {target} matches nothing")
        for o in hits:
            for op in yaml.safe_load(patch["patch"]):
                apply_op(o, op)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec", {})
    if "template" in spec:
        return spec["template"].get("spec")
    if "jobTemplate" in spec:
        return spec["jobTemplate"]["spec"]["template"].get("spec")
    return None


def _set_image(obj: dict[str, Any], image: dict[str, str]) -> None:
    pod = _pod_spec(obj)
    if pod is None:
        return
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        name, _, tag = c["image"].partition(":")
        if name == image["name"]:
            c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def apply_op(doc: dict[str, Any], op: dict[str, Any]) -> None:
    """One JSON 6902 operation (add / replace / remove) on ``doc``."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    kind = op["op"]
    if isinstance(node, list):
        idx = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(idx, op["value"])
        elif kind == "replace":
            node[idx] = op["value"]
        elif kind == "remove":
            del node[idx]
        else:
            raise RenderError(f"unsupported op {kind}")
        return
    if kind in ("replace", "remove") and last not in node:
        raise RenderError(f"{op['path']}: nothing to {kind}")
    if kind in ("add", "replace"):
        node[last] = op["value"]
    elif kind == "remove":
        del node[last]
    else:
        raise RenderError(f"unsupported op {kind}")
