"""Make a trained bundle the package's default, with its figures in the manifest.

    python scripts/ship_bundle.py runs/resnet-full/bundle ../shared/data/challenge2020 \
        --cv runs/cv-resnet/results.json --lodo runs/lodo-resnet/results.json

Copies the bundle to ``edge/default_bundle/``, scores it on the data it was
trained on (``validation.training_set``: in-sample, NOT an estimate of
performance, recorded so that ``ecg-train evaluate`` can be checked to
reproduce it) and records the pooled cross-validated and leave-one-source-out
figures that are the honest estimates.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from edge.bundle import default_bundle_path, load_bundle
from trainer.crossval import fold_means
from trainer.data import scan
from trainer.evaluate import evaluate_items
from trainer.pipeline import with_validation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--cv", type=Path)
    ap.add_argument("--lodo", type=Path)
    args = ap.parse_args()
    dest = default_bundle_path()
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(args.bundle, dest)
    bundle = load_bundle(dest)
    items = scan(args.data).items
    results = evaluate_items(bundle, items, ["int8", "fp32"])
    figures: dict = {
        "training_set": {p: ev.figures.to_json() for p, ev in results.items()},
        "training_set_note": "in-sample (the records the bundle was trained on); not an estimate",
    }
    for key, path in (("cross_validation", args.cv), ("leave_one_source_out", args.lodo)):
        if path and path.is_file():
            r = json.loads(path.read_text())
            figures[key] = {
                "scheme": r["scheme"],
                "model": r["model"],
                "pooled": r["pooled"],
                "fold_mean": fold_means(r),
            }
    bundle = with_validation(bundle, figures)
    print(json.dumps(figures["training_set"], indent=2))
    print(f"default bundle: {bundle.path} sha256 {bundle.sha256}")


if __name__ == "__main__":
    main()
