"""The int8 extractor gives the same integers on every CPU: proved here, on one machine.

onnxruntime's output on real frames must equal, bit for bit, the graph
computed in integers by :mod:`trainer.int8_reference` from its quantization
parameters. That reference is CPU-independent by construction, and the two
conditions that make every onnxruntime kernel compute those same integers
(no int16 pair-sum saturation on x86 without VNNI, one scale per residual
Add) are checked on the exported graph. The previous scheme (8-bit weights)
is shown to break the first: emulating x86 AVX2's ``vpmaddubsw`` on it gives
other features.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge.dsp import DspConfig, model_windows, preprocess
from edge.errors import EcgEdgeError
from edge.records import find_records, read_record
from trainer.export import export_fp32, quantize_int8
from trainer.int8_reference import (
    INT16_MAX,
    add_scales,
    check_portable,
    conv_weights,
    pair_sum_bound,
    run_reference,
)
from trainer.models import build_model

CONFIG = DspConfig()


@pytest.fixture(scope="module")
def windows(shared_data) -> np.ndarray:
    """(n, 12, 1000) model windows of real records from three of the databases."""
    out = []
    for db in ("cpsc2018", "chapman-ningbo", "ptb-xl"):
        folder = shared_data / db
        if not folder.is_dir():
            continue
        for h in find_records([folder])[:3]:
            r = read_record(h)
            x = preprocess(r.signal, r.fs, CONFIG)
            out.append(model_windows(x[:, : CONFIG.frame_samples], CONFIG))
    assert out, "no records found"
    return np.concatenate(out).astype(np.float32)


def _session(path, threads=1, optimized=None) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.log_severity_level = 3
    if optimized is not None:
        o.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=["cnn", "resnet", "cnn-dilated"])
def graphs(request, windows, tmp_path_factory):
    """fp32, portable int8 and previous-scheme int8 graphs of Model 1, Model 2, or Model 1
    with dilated convolutions (``ecg-train fit --dilations``).

    Random weights (seeded) with batch-norm statistics taken from the real
    windows, so activations have the ranges of a trained model's.
    """
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    if name == "cnn-dilated":
        model = build_model("cnn", 24, dilations=(1, 1, 1, 2, 4)).train()
    else:
        model = build_model(name, 24).train()
    with torch.no_grad():
        for _ in range(3):
            model.feature_map(torch.from_numpy(windows))
    model.eval()
    fp32 = export_fp32(model, tmp / "fp32.onnx", n_samples=CONFIG.window_samples)
    calib = windows[::2]
    return {
        "name": name,
        "fp32": fp32,
        "int8": quantize_int8(fp32, tmp / "int8.onnx", calib),
        "old": quantize_int8(fp32, tmp / "old.onnx", calib, portable=False),
        "tmp": tmp,
    }


class TestExactInt8:
    @pytest.mark.parametrize("threads", [1, 2])
    def test_onnxruntime_equals_the_integer_reference(self, graphs, windows, threads):
        got = _session(graphs["int8"], threads).run(None, {"frames": windows})[0]
        want = run_reference(graphs["int8"], windows)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want)
        assert np.count_nonzero(want) > want.size // 10  # not a trivially zero feature map

    def test_what_ran_is_the_integer_kernels(self, graphs):
        opt = graphs["tmp"] / "int8.opt.onnx"
        _session(graphs["int8"], optimized=opt)
        ops = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
        qdq = collections.Counter(n.op_type for n in onnx.load(str(graphs["int8"])).graph.node)
        assert ops["QLinearConv"] == qdq["Conv"] and ops["QLinearAdd"] == qdq["Add"]
        assert ops["Conv"] == ops["FusedConv"] == ops["Add"] == 0
        assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 1  # input and output only

    def test_weights_respect_the_int16_pair_bound(self, graphs):
        for w in conv_weights(graphs["int8"]).values():
            assert w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 64
        assert pair_sum_bound(graphs["int8"]) <= INT16_MAX
        figures = check_portable(graphs["int8"])
        assert figures["pair_sum_bound"] <= INT16_MAX
        assert figures["residual_adds"] == (16 if graphs["name"] == "resnet" else 0)

    def test_avx2_pair_saturation_cannot_change_the_portable_graph(self, graphs, windows):
        exact = run_reference(graphs["int8"], windows)
        assert np.array_equal(run_reference(graphs["int8"], windows, saturate_pairs=True), exact)

    def test_residual_adds_share_one_scale(self, graphs):
        for sa, sb, sc in add_scales(graphs["int8"]):
            assert sa == sb == sc

    def test_int8_stays_close_to_fp32(self, graphs, windows):
        f = _session(graphs["fp32"]).run(None, {"frames": windows})[0].reshape(len(windows), -1)
        q = _session(graphs["int8"]).run(None, {"frames": windows})[0].reshape(len(windows), -1)
        cos = (f * q).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(q, axis=1))
        assert cos.min() > 0.99


class TestPreviousScheme:
    def test_full_range_weights_exceed_the_pair_bound_and_are_refused(self, graphs):
        assert pair_sum_bound(graphs["old"]) > INT16_MAX
        with pytest.raises(EcgEdgeError, match="vpmaddubsw saturates"):
            check_portable(graphs["old"])

    def test_on_avx2_it_gives_other_features(self, graphs, windows):
        if graphs["name"] == "resnet":  # unequal Add scales: no single integer answer at all
            with pytest.raises(EcgEdgeError, match="unequal scales"):
                run_reference(graphs["old"], windows)
            return
        exact = run_reference(graphs["old"], windows)  # what VNNI and aarch64 compute
        avx2 = run_reference(graphs["old"], windows, saturate_pairs=True)
        assert not np.array_equal(avx2, exact)
