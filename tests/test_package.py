"""The public surface: names, signatures, typing marker, and a light import."""

import inspect
import subprocess
import sys
from pathlib import Path

import rewardkit

CORE_SIGNATURES = {
    "group_advantages": "(rewards, group_ids, *, std_floor=1e-06, ddof=0, global_std=False, std_floor_mode='clamp')",
    "gdpo_advantages": "(rewards, group_ids, weights=None, *, std_floor=1e-06, ddof=0, std_floor_mode='clamp')",
    "dar_weights": "(similarity, group_ids, *, gamma=2.0, w_min=0.5, w_max=5.0, eps=1e-06, reclip=True, allow_singleton_groups=False)",
    "drs_scale": "(similarity, n_refs=None, *, tau=0.65, k_mode='increase', k0=10.0, k1=3.0, n_min=2, n_max=6)",
    "clipped_policy_loss": "(log_prob, old_log_prob, advantages, *, clip_range=0.0001, adv_clip=5.0, weights=None)",
}


def _bare(signature: inspect.Signature) -> str:
    params = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=params, return_annotation=inspect.Signature.empty))


def test_public_signatures_are_stable() -> None:
    for name, expected in CORE_SIGNATURES.items():
        assert _bare(inspect.signature(getattr(rewardkit, name))) == expected, name


def test_all_names_resolve_and_are_documented() -> None:
    for name in rewardkit.__all__:
        obj = getattr(rewardkit, name)
        if callable(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
    docs = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    missing = [n for n in rewardkit.__all__ if n != "__version__" and f"rewardkit.{n}" not in docs]
    assert not missing, f"exported but absent from docs/api.md: {missing}"


def test_py_typed_marker_ships() -> None:
    assert (Path(rewardkit.__file__).parent / "py.typed").is_file()


def test_core_import_pulls_no_heavy_frameworks() -> None:
    # pydantic too: the recipes' configs need it, it is in an extra, not in the core dependencies
    code = (
        "import sys, rewardkit; heavy = [m for m in ('diffusers', 'transformers', 'peft', 'accelerate',"
        " 'open_clip', 'torchvision', 'pydantic') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_loads_the_core_only() -> None:
    # evaluation, reward models, judges, the backbone registry and triton load on first use
    lazy = ("rewardkit.evaluation", "rewardkit.rewards", "rewardkit.backbone", "rewardkit.training", "triton")
    code = f"import sys, rewardkit; print(','.join(sorted(m for m in sys.modules if m.startswith({lazy!r}))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_resolve_on_first_use_and_are_listed() -> None:
    code = (
        "import sys, rewardkit; f = rewardkit.lighting_consistency; "
        "print(f.__module__, 'rewardkit.evaluation.lighting' in sys.modules, 'evaluate' in dir(rewardkit))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["rewardkit.evaluation.lighting", "True", "True"]
    try:
        rewardkit.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown names must raise AttributeError")


def test_docs_cite_only_documents_that_ship() -> None:
    root = Path(__file__).parents[1]
    files = [
        *root.joinpath("rewardkit").rglob("*.py"),
        *root.joinpath("docs").rglob("*.md"),
        root / "README.md",
    ]
    offenders = [str(f.relative_to(root)) for f in files if "rl-math" in f.read_text(encoding="utf-8")]
    assert offenders == [], (
        f"these cite rl-math.md, which is not part of the package or its docs: {offenders}"
    )
    assert "porting.md" in (root / "mkdocs.yml").read_text()
