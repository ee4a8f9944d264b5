"""``python -m benchmarks --quick`` runs, checks its own figures, and writes the agreed keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
class TestQuickBenchmarks:
    def test_quick_run_writes_sane_results(self, tmp_path: Path) -> None:
        out = tmp_path / "bench"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        r = json.loads((out / "results.json").read_text())
        assert (out / "results.md").read_text().startswith("# ecg-edge benchmarks")
        assert r["sanity"]["ok"], r["sanity"]["problems"]
        for model in ("cnn", "resnet"):
            for prec in ("int8", "fp32"):
                lat = r["frame_latency_ms"][model][prec]
                assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
                lim = r["limit"][model][prec]
                for k in ("macs", "peak_macs_per_s", "floor_ms", "ratio"):
                    assert lim[k] > 0
            if r["bundles"][model]["checkpoint"] != "None":
                assert r["frame_latency_ms"][model]["torch"]["p99"] > 0
        assert 0 < r["end_to_end_ms"]["p50"] <= r["end_to_end_ms"]["p99"]
        assert r["realtime_factor_one_core"] > 0 and r["streams_per_core"] > 0
        assert 0 < r["rss_mb"]["steady"] <= r["rss_mb"]["peak"] * 1.001
        assert r["bundle_mb"] > 0
        for model, res in r["incremental"].items():  # the window cache changes no score
            for prec in ("int8", "fp32") if "int8" in res else ():
                assert res[prec]["scores_equal"] and res[prec]["frames_compared"] > 0, model
                assert res[prec]["per_hop_ms"]["p50"] > 0 and res[prec]["ratio"] > 0
                if prec == "int8":
                    assert r["frame_latency_ms"][model]["int8_incremental"]["p50"] > 0
        t = r["throughput"]
        if "classifier_ceiling_one_core" in t:
            assert t["classifier_ceiling_one_core"] > 0 and t["ratio_to_classifier_ceiling"] > 0
        assert "accuracy" in r and "machine" in r and r["machine"]["commit"]


class TestLosoSummary:
    def _run(self, root, name: str, auroc: float):
        from benchmarks.loso_summary import FIGURES, SOURCES

        run = root / name
        for k, src in enumerate(SOURCES):
            (run / "outputs" / src).mkdir(parents=True)
            (run / "outputs" / src / f"{name}-{src}.csv").write_text("#x\n")
            figs = {f: 0.5 for f in FIGURES} | {"auroc": auroc + 0.01 * k}
            (run / f"{src}.json").write_text(json.dumps({"int8": figs}))
        return run

    def test_seeds_are_summarised_and_merged_later(self, tmp_path):
        """Per seed the mean over the sources; over the seeds their mean and spread; a
        later session's seeds merged with the recorded one, whose outputs stay."""
        from benchmarks.loso_summary import main

        out = tmp_path / "loso"
        s0 = self._run(tmp_path, "s0", 0.80)
        assert main([str(s0), "--out", str(out)]) == 0
        assert (out / "cpsc" / "s0-cpsc.csv").is_file()
        s1, s2 = self._run(tmp_path, "s1", 0.70), self._run(tmp_path, "s2", 0.90)
        assert main(["--merge", str(s1), str(s2), "--out", str(out)]) == 0
        r = json.loads((out / "results.json").read_text())
        assert r["runs"] == ["s0", "s1", "s2"]
        by_run = r["mean_over_sources_by_run"]["auroc"]
        assert by_run == pytest.approx({"s0": 0.82, "s1": 0.72, "s2": 0.92})
        assert r["mean_over_sources_over_seeds"]["auroc"]["mean"] == pytest.approx(0.82)
        assert r["mean_over_sources_over_seeds"]["auroc"]["sd"] == pytest.approx(0.1)
        assert (out / "cpsc" / "s0-cpsc.csv").is_file()  # the recorded outputs are kept
        assert not (out / "cpsc" / "s1-cpsc.csv").exists()


class TestWindowPooling:
    def test_max_pooled_scores_bound_the_averaged_features(self, samples_dir):
        """The heads are linear: a frame's score of its windows' mean features is the mean
        of their scores, so never above their maximum; one window a frame: the same."""
        from benchmarks.window_pooling import record_scores
        from edge.bundle import load_bundle
        from edge.classify import Classifier
        from edge.records import read_record

        clf = Classifier(load_bundle(), "int8")
        long_ = record_scores(clf, read_record(samples_dir / "cpsc2018-extra" / "Q0005.hea"))
        short = record_scores(clf, read_record(samples_dir / "ludb" / "LU0001.hea"))
        assert long_[2] == 3 and short[2] == 1
        assert np.all(long_[1] >= long_[0] - 1e-9) and np.any(long_[1] > long_[0] + 1e-6)
        np.testing.assert_allclose(short[1], short[0], rtol=0, atol=1e-9)
