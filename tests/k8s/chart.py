"""Rendering helpers shared by the chart tests (helm-python-sdk: Helm 4 as a library)."""

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "candor"
PROFILES = CHART / "profiles"


def load():
    import helm_python

    return helm_python.Chart.load(str(CHART))


def render(values=None, *, name="candor", namespace="kt", upgrade=False):
    """Renders the chart; returns (objects, notes) with objects parsed from YAML."""
    chart = load()
    out = chart.render(
        values or {},
        name=name,
        namespace=namespace,
        is_install=not upgrade,
        is_upgrade=upgrade,
    )
    objects, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {})
                doc["_template"] = path
                objects.append(doc)
    return objects, notes


def profile(name):
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text()) or {}


def find(objects, kind, name=None):
    got = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return got
