"""The trainer end to end on real records: phase 1, export, int8, phase 2, bundle, evaluate."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.testing import free_port
from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.errors import BundleError, EcgEdgeError
from trainer.fit import TrainConfig, load_checkpoint, pick_device
from trainer.pipeline import record_model_inputs

ECG_TRAIN = [sys.executable, "-m", "trainer.cli"]


def _run(*args, **kw):
    return subprocess.run(
        [*ECG_TRAIN, *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )


class TestTinyBundle:
    def test_onnx_agrees_with_torch(self, tiny_bundle, samples_dir):
        from trainer.data import scan

        bundle = load_bundle(tiny_bundle)
        model = load_checkpoint(tiny_bundle.parent / "work" / "best.pt")
        fp32_clf, int8_clf = Classifier(bundle, "fp32"), Classifier(bundle, "int8")
        ref, fp32, int8 = [], [], []
        for it in scan([samples_dir]).items[:6]:
            windows = record_model_inputs(it)
            with torch.no_grad():  # per window, then the mean over the windows
                ref.append(model.features(torch.from_numpy(windows)).numpy().mean(0))
            fp32.append(fp32_clf.features(windows))
            int8.append(int8_clf.features(windows))
        ref, fp32, int8 = np.array(ref), np.array(fp32), np.array(int8)
        assert np.max(np.abs(fp32 - ref)) < 1e-4 * max(1.0, np.abs(ref).max())
        cos = (int8 * ref).sum(1) / (np.linalg.norm(int8, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() > 0.98
        s_ref = bundle.head.scores(ref)
        s_fp32 = bundle.head.scores(fp32)
        np.testing.assert_allclose(s_fp32, s_ref, atol=1e-3)

    def test_scores_are_calibrated_probabilities(self, tiny_bundle, samples_dir):
        from trainer.data import scan

        bundle = load_bundle(tiny_bundle)
        assert bundle.head.calibrated and bundle.manifest.format_version == 2
        clf = Classifier(bundle, "int8")
        for it in scan([samples_dir]).items[:4]:
            c = clf.classify(record_model_inputs(it)[:1])
            assert np.all((c.scores >= 0) & (c.scores <= 1))
            assert np.all((c.thresholds >= 0) & (c.thresholds <= 1))
            # the decision is the raw score against the raw threshold, shown as probabilities
            raw = clf.scores([record_model_inputs(it)[:1]])[0]
            np.testing.assert_array_equal(c.positive, raw >= bundle.head.thresholds)

    def test_manifest_says_what_it_is(self, tiny_bundle, samples_dir):
        m = load_bundle(tiny_bundle).manifest
        assert m.model == "cnn" and len(m.classes) == 24
        assert m.training["data"]["n_records"] == 14
        names = sorted(h.stem for h in Path(samples_dir).rglob("*.hea"))
        assert m.training["train_record_names"] == names  # anyone can check what it saw
        assert m.training["quantization"]["format"] == "QDQ"
        skipped = m.training["phase2"]["skipped_classes"]
        assert "426627000" in skipped  # no Brady record among the samples: said, skipped
        head = load_bundle(tiny_bundle).head
        j = m.codes.index("426627000")
        assert np.all(head.W[j] == 0) and head.b[j] < head.thresholds[j]

    def test_altered_or_missing_file_is_refused(self, tiny_bundle, tmp_path):
        copy = tmp_path / "b"
        shutil.copytree(tiny_bundle, copy)
        with open(copy / "head.npz", "ab") as fh:
            fh.write(b"\0")
        with pytest.raises(BundleError, match=r"head.npz .* was altered"):
            load_bundle(copy)
        (copy / "extractor.onnx").unlink()
        with pytest.raises(BundleError, match=r"missing extractor\.onnx"):
            load_bundle(copy)

    def test_archive_loads(self, tiny_bundle, tmp_path):
        arc = tmp_path / "b.tar.gz"
        with tarfile.open(arc, "w:gz") as tf:
            tf.add(tiny_bundle, arcname="bundle")
        assert load_bundle(arc).sha256 == load_bundle(tiny_bundle).sha256


class TestEvaluateCli:
    def test_outputs_json_and_report(self, tiny_bundle, samples_dir, tmp_path):
        r = _run(
            "evaluate",
            tiny_bundle,
            samples_dir,
            "--precision",
            "both",
            "--outputs",
            tmp_path / "out",
            "--json",
            tmp_path / "e.json",
            "--report",
            tmp_path / "rep",
        )
        assert r.returncode == 0, r.stderr
        figs = json.loads((tmp_path / "e.json").read_text())
        assert set(figs) == {"int8", "fp32"}
        assert set(figs["int8"]) == {
            "auroc",
            "auprc",
            "accuracy",
            "f_measure",
            "f_beta",
            "g_beta",
            "challenge_metric",
            "brier",
        }
        assert len(list((tmp_path / "out" / "int8").glob("*.csv"))) == 14
        # the scorer reads what evaluate wrote and gets the same figures
        s = _run("score", samples_dir, tmp_path / "out" / "int8", "--json", tmp_path / "s.json")
        assert s.returncode == 0, s.stderr
        again = json.loads((tmp_path / "s.json").read_text())
        for k, v in figs["int8"].items():
            if k != "brier":  # evaluate's calibration figure; the Challenge scorer has none
                assert again[k] == pytest.approx(v, abs=1e-6), k
        assert (tmp_path / "rep" / "report.md").read_text().count("|") > 100
        assert (tmp_path / "rep" / "curves_int8.png").stat().st_size > 1000

    def test_bad_bundle_is_one_line(self, samples_dir, tmp_path):
        r = _run("evaluate", tmp_path / "nope", samples_dir)
        assert r.returncode == 2
        assert r.stderr.startswith("error: bundle") and "Traceback" not in r.stderr


class TestFitCli:
    @pytest.mark.slow
    def test_ptbxl_at_100_hz_with_its_validation_fold(self, shared_data, samples_dir, tmp_path):
        """PTB-XL records (100 Hz) beside 500/1000 Hz ones; fold 9's patients validate."""
        ptbxl = shared_data.parent / "ptbxl" / "sample"
        env = {**os.environ, "ECG_EDGE_CACHE": str(tmp_path / "cache")}
        r = _run(
            "fit",
            ptbxl,
            samples_dir,
            "--out",
            tmp_path / "b",
            "--epochs",
            "1",
            "--threads",
            "2",
            env=env,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        b = load_bundle(tmp_path / "b")
        t = b.manifest.training
        val = set(t["validation_record_names"])
        fold9 = {h.stem for h in ptbxl.glob("*.hea") if "#StratFold: 9" in h.read_text()}
        assert val == fold9 and not val & set(t["train_record_names"])
        assert len(t["train_record_names"]) == 48 + 14 - len(fold9)
        assert b.manifest.dsp.model_fs == 100 and b.head.calibrated
        assert "svm_int8" in b.manifest.validation["validation_set"]

    @pytest.mark.slow
    def test_millivolt_bundle_trains_and_runs_as_it_trained(self, shared_data, tmp_path):
        """--norm mv: the manifest says so, and the edge feeds the model what phase 1 saw."""
        from trainer.data import scan
        from trainer.fit import dsp_config, eval_frame

        ptbxl = shared_data.parent / "ptbxl" / "sample"
        env = {**os.environ, "ECG_EDGE_CACHE": str(tmp_path / "cache")}
        r = _run("fit", ptbxl, "--out", tmp_path / "b", "--epochs", "1", "--norm", "mv", env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        b = load_bundle(tmp_path / "b")
        assert b.manifest.dsp.norm == "mv"
        assert b.manifest.training["phase1"]["config"]["norm"] == "mv"
        it = scan([ptbxl]).items[0]
        edge_in = record_model_inputs(it, b.manifest.dsp)  # what edge.classify is given
        assert np.abs(edge_in).max() > 0.3  # millivolts, not unit variance
        lead_std = edge_in[0].std(axis=1)
        assert lead_std.max() / lead_std.min() > 1.5  # leads keep their own amplitudes
        # phase 1 validated on the same numbers (the cache at 100 Hz, the same window)
        from trainer.data import load_cache

        _, (sig,) = load_cache(scan([it.header]), cache_dir=tmp_path / "c2", model_rate=True)
        cfg = dsp_config(TrainConfig(norm="mv"))
        np.testing.assert_allclose(eval_frame(sig, config=cfg), edge_in[-1], atol=2e-3)
        # a record with twice the voltage scores differently (z-scoring would give the same)
        clf = Classifier(b, "fp32")
        assert not np.allclose(clf.features(edge_in), clf.features(2 * edge_in), atol=1e-3)

    def test_no_usable_records(self, tmp_path):
        (tmp_path / "x.hea").write_text("x 12 500 5000\n")
        r = _run("fit", tmp_path, "--out", tmp_path / "b", "--epochs", "1")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "usable records" in r.stderr

    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
    def test_cuda_without_cuda(self, samples_dir, tmp_path):
        with pytest.raises(EcgEdgeError, match="no CUDA"):
            pick_device("cuda")
        r = _run("fit", samples_dir, "--out", tmp_path / "b", "--device", "cuda")
        assert r.returncode == 2 and "no CUDA device" in r.stderr

    @pytest.mark.slow
    def test_resume_and_repeatable(self, samples_dir, tmp_path):
        from trainer.fit import train_extractor

        signals, labels, tr, va = _tiny_split(samples_dir, tmp_path)
        cfg = TrainConfig(model="cnn", epochs=3, threads=1)
        quiet = {"log": lambda *_: None}
        a = train_extractor(signals, labels, tr, va, cfg, tmp_path / "a", **quiet)
        b = train_extractor(signals, labels, tr, va, cfg, tmp_path / "b", **quiet)
        assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
        # interrupted after 2 epochs, then resumed: the same 3 epochs as straight through
        c = train_extractor(signals, labels, tr, va, cfg, tmp_path / "c", stop_after=2, **quiet)
        assert len(c.history) == 2
        d = train_extractor(signals, labels, tr, va, cfg, tmp_path / "c", resume=True, **quiet)
        assert [r["loss"] for r in d.history] == pytest.approx([r["loss"] for r in a.history])

    @pytest.mark.slow
    def test_weight_average_kept_and_resumed(self, samples_dir, tmp_path):
        from trainer.fit import train_extractor

        signals, labels, tr, va = _tiny_split(samples_dir, tmp_path)
        quiet = {"log": lambda *_: None}
        cfg = TrainConfig(model="cnn", epochs=2, threads=1, ema=0.9)
        a = train_extractor(signals, labels, tr, va, cfg, tmp_path / "a", **quiet)
        ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
        raw, avg = ck["model"]["body.0.weight"], ck["ema"]["module.body.0.weight"]
        assert not torch.equal(raw, avg)  # the average is not the last step's weights
        best = torch.load(tmp_path / "a" / "best.pt", weights_only=False)
        if best["epoch"] == cfg.epochs:  # the model kept is the average, not the raw weights
            assert torch.equal(best["model"]["body.0.weight"], avg)
        # interrupted after one epoch and resumed: the average carries on as straight through
        train_extractor(signals, labels, tr, va, cfg, tmp_path / "b", stop_after=1, **quiet)
        b = train_extractor(signals, labels, tr, va, cfg, tmp_path / "b", resume=True, **quiet)
        assert [r["val_challenge_metric"] for r in b.history] == pytest.approx(
            [r["val_challenge_metric"] for r in a.history]
        )
        for k, v in a.model.state_dict().items():
            assert torch.allclose(v.float(), b.model.state_dict()[k].float(), atol=1e-6), k
        with pytest.raises(EcgEdgeError, match="ema"):
            TrainConfig(ema=1.0)
        plain = dataclasses.replace(cfg, ema=0.0)  # a run without the average cannot resume with
        train_extractor(signals, labels, tr, va, plain, tmp_path / "p", stop_after=1, **quiet)
        with pytest.raises(EcgEdgeError, match="without --ema"):
            train_extractor(signals, labels, tr, va, cfg, tmp_path / "p", resume=True, **quiet)


def _tiny_split(samples_dir, tmp_path):
    """The 48 sample records cached: (signals, labels, 10 training, 4 validation indices)."""
    from trainer.data import load_cache, scan

    items, signals = load_cache(scan([samples_dir]), cache_dir=tmp_path / "c", workers=1)
    labels = np.array([it.labels for it in items])
    return signals, labels, np.arange(10), np.arange(10, 14)


class TestDistributed:
    @pytest.mark.slow
    def test_torchrun_two_processes_write_one_bundle(self, samples_dir, tmp_path):
        """Two ranks train, rank 0's early stop ends both, rank 0 alone writes the bundle.

        Patience 1 over 9 epochs stops once the metric of the 7 validation records has not
        improved for an epoch after epoch 6; a rank that went on alone would wait for the
        other's gradients (or find its peer gone) and torchrun would fail.
        """
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={free_port()}", "-m", "trainer.cli"]  # fmt: skip
        r = subprocess.run(
            [*torchrun, "fit", str(samples_dir), "--model", "cnn", "--out", str(tmp_path / "b"),
             "--epochs", "9", "--patience", "1", "--folds", "2", "--threads", "1"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        # both ends of stderr: the first error of a rank, and torchrun's summary
        assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-3000:]
        assert "early stop" in r.stderr
        assert r.stderr.count("bundle written to") == 1
        load_bundle(tmp_path / "b")


# How far figures may move when they are recomputed on another CPU. int8: the extractor
# gives the same integers everywhere (trainer.int8_reference.check_portable; proved by
# tests/trainer/test_int8_exact.py), so only float64 head arithmetic (BLAS summation
# order) can differ, far below 1e-6. fp32: convolution kernels sum in a CPU-specific
# order (AVX2 vs AVX-512 FMA), features move ~1e-6 relative and a frame scored within
# that of its threshold may flip; 2e-3 is a few records' worth of flips on the full set.
RECOMPUTED_TOLERANCE = {"int8": 1e-6, "fp32": 2e-3}


class TestShippedBundle:
    @pytest.mark.slow
    def test_evaluate_reproduces_the_recorded_figures(self, shared_data, tmp_path):
        """The default bundle's manifest records its figures on the full set; evaluate again.

        The figures were made on whatever CPU the bundle was made on
        (``training.cpu`` in the manifest); they must reproduce on this one.
        """
        from trainer.int8_reference import check_portable

        bundle = load_bundle(None)
        recorded = bundle.manifest.validation.get("training_set")
        assert recorded, "the shipped manifest records no training-set figures"
        check_portable(bundle.extractor_path("int8"))  # else int8 figures depend on the CPU
        r = _run("evaluate", bundle.path, shared_data, "--precision", "both",
                 "--json", tmp_path / "e.json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        again = json.loads((tmp_path / "e.json").read_text())
        for precision, tol in RECOMPUTED_TOLERANCE.items():
            for k, v in recorded[precision].items():
                assert again[precision][k] == pytest.approx(v, abs=tol), (precision, k)


class TestReuse:
    def test_finished_run_is_reused_not_extended(self, samples_dir, tmp_path):
        from trainer.data import load_cache, scan
        from trainer.fit import train_extractor

        rep = scan([samples_dir])
        items, signals = load_cache(rep, cache_dir=tmp_path / "c", workers=1)
        labels = np.array([it.labels for it in items])
        cfg = TrainConfig(model="cnn", epochs=2, threads=1)
        quiet = {"log": lambda *_: None}
        a = train_extractor(signals, labels, np.arange(10), np.arange(10, 14), cfg,
                            tmp_path / "w", **quiet)  # fmt: skip
        b = train_extractor(signals, labels, np.arange(10), np.arange(10, 14), cfg,
                            tmp_path / "w", resume=True, **quiet)  # fmt: skip
        assert b.history == a.history and b.best_epoch == a.best_epoch
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)


class TestCrossval:
    @pytest.mark.slow
    def test_both_heads_both_precisions_pooled_and_per_fold(self, samples_dir, tmp_path):
        r = _run("crossval", samples_dir, "--model", "cnn", "--out", tmp_path / "cv",
                 "--folds", "2", "--epochs", "1", "--threads", "1")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        res = json.loads((tmp_path / "cv" / "results.json").read_text())
        keys = {"svm_fp32", "svm_int8", "sigmoid_fp32", "sigmoid_int8"}
        assert set(res["pooled"]) == keys
        assert len(res["per_fold"]) == 2 and sum(f["n_test"] for f in res["per_fold"]) == 14
        for fig in res["pooled"].values():
            assert -1 <= fig["challenge_metric"] <= 1.01
        table = (tmp_path / "cv" / "results.md").read_text()
        assert table.count("| svm |") == 4 and "fold mean" in table
        load_bundle(tmp_path / "cv" / "fold0" / "bundle")
