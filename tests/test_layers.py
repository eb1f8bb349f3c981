"""The package's layering: lower layers never import higher ones (checked on the source, not by convention)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lmtie"
# layer -> the lmtie layers it must not import
FORBIDDEN = {
    "data": {"modules", "models", "training", "evaluation", "ablation", "cli", "hub"},
    "modules": {"data", "models", "training", "evaluation", "ablation", "cli", "hub"},
    "models": {"data", "training", "evaluation", "ablation", "cli", "hub"},
    "training": {"evaluation", "ablation", "cli", "hub"},
    "evaluation": {"ablation", "cli"},
}


def _lmtie_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n.split(".")[1] for n in names if n.startswith("lmtie.") and n.count(".") >= 1}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_higher_layers(layer):
    files = sorted((ROOT / layer).glob("*.py"))
    assert files, f"lmtie/{layer} has no modules"
    bad = {f"{f.name} imports lmtie.{m}" for f in files for m in _lmtie_imports(f) & FORBIDDEN[layer]}
    assert not bad, sorted(bad)


def test_the_checker_sees_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import lmtie.models\nfrom lmtie.training.trainer import Trainer\n")
    assert _lmtie_imports(probe) == {"models", "training"}
