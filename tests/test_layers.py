"""The package's layering: lower layers never import higher ones, and nothing outside lmtie/models
names a concrete model family (checked on the source, not by convention)."""

import ast
import inspect
from pathlib import Path

import pytest

import lmtie.models
from lmtie.models import FAMILIES

ROOT = Path(__file__).resolve().parents[1] / "lmtie"
# layer (a folder or a module of lmtie) -> the lmtie layers it must not import
FORBIDDEN = {
    "data": {"modules", "models", "training", "evaluation", "ablation", "cli", "hub", "checkpoint"},
    "modules": {"data", "models", "training", "evaluation", "ablation", "cli", "hub", "checkpoint"},
    "models": {"data", "training", "evaluation", "ablation", "cli", "hub", "checkpoint"},
    "checkpoint": {"training", "evaluation", "ablation", "cli", "hub"},
    # training may use evaluation (--eval-bleu validates with its beam search and sacrebleu); evaluation never
    # imports training, so the two stay acyclic
    "training": {"ablation", "cli", "hub"},
    "evaluation": {"training", "ablation", "cli"},
    "hub": {"training", "ablation", "cli"},
    "interop": {"training", "evaluation", "ablation", "cli", "hub"},
}
# the run's config dataclasses are data, not the trainer: a checkpoint holds them and checks them on load
ALLOWED = ("lmtie.training.config",)
# what the protocol must be enough for: these never name a family's classes or modules
FAMILY_BLIND = ("training", "evaluation", "ablation", "hub", "checkpoint", "interop")


def _files(layer: str) -> list[Path]:
    folder = ROOT / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [ROOT / f"{layer}.py"]


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from lmtie import checkpoint`
    return names


def _lmtie_imports(path: Path) -> set[str]:
    names = {n for n in _imported_modules(ast.parse(path.read_text()))
             if not any(n == a or n.startswith(a + ".") for a in ALLOWED)}
    top = {n.split(".")[1] for n in names if n.startswith("lmtie.") and n.count(".") >= 1}
    return {t for t in top if (ROOT / t).is_dir() or (ROOT / f"{t}.py").is_file()}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_higher_layers(layer):
    files = _files(layer)
    assert files and all(f.is_file() for f in files), f"lmtie/{layer} has no modules"
    bad = {f"{f.relative_to(ROOT)} imports lmtie.{m}" for f in files for m in _lmtie_imports(f) & FORBIDDEN[layer]}
    assert not bad, sorted(bad)


def _family_names() -> tuple[set[str], set[str]]:
    """(class names defined in a family's module, the family modules' dotted names)."""
    modules = {inspect.getmodule(f.model_class) for f in FAMILIES.values()}
    modules |= {inspect.getmodule(f.config_class) for f in FAMILIES.values()}
    classes = {name for m in modules for name, obj in vars(m).items()
               if inspect.isclass(obj) and obj.__module__ == m.__name__}
    archs = {inspect.getmodule(fn).__name__ for _, fn in lmtie.models.ARCHS.values()}
    return classes, {m.__name__ for m in modules} | archs


def _family_references(path: Path, classes: set[str], modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {m for m in _imported_modules(tree) if m in modules or m.rsplit(".", 1)[0] in modules}
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name in classes:
            found.add(name)
        if isinstance(node, ast.ImportFrom):
            found.update(a.name for a in node.names if a.name in classes)
    return found


@pytest.mark.parametrize("layer", FAMILY_BLIND)
def test_layer_names_no_concrete_model(layer):
    classes, modules = _family_names()
    assert {"TransformerLanguageModel", "TransformerLMConfig", "TransformerDecoder"} <= classes
    bad = {f"{f.relative_to(ROOT)}: {sorted(refs)}" for f in _files(layer)
           if (refs := _family_references(f, classes, modules))}
    assert not bad, sorted(bad)


def test_the_checkers_see_imports_and_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import lmtie.models\nfrom lmtie.training.trainer import Trainer\nfrom lmtie import checkpoint\n"
                     "from lmtie.models import TransformerLMConfig\nx = lmtie.models.transformer_lm.TransformerDecoder\n")
    assert _lmtie_imports(probe) == {"models", "training", "checkpoint"}
    classes, modules = _family_names()
    assert _family_references(probe, classes, modules) == {"TransformerLMConfig", "TransformerDecoder"}
