"""The int8 extractor computed exactly, in numpy, from its QDQ graph's quantization parameters.

onnxruntime fuses the QDQ graph of :func:`trainer.export.quantize_int8` into
``QuantizeLinear -> QLinearConv / NhwcMaxPool / QLinearAdd -> DequantizeLinear``.
Each of those is integer arithmetic plus one float32 requantization, written
here the way onnxruntime's MLAS kernels do it:

- ``QuantizeLinear``: ``clamp(round_half_even(x / scale) + zp)`` (a true
  division on every MLAS path: SSE2, AVX-512F, NEON);
- ``QLinearConv``: ``acc = sum (x - x_zp) * w + bias`` in int32, then
  ``clamp(round_half_even(float32(acc) * m) + y_zp)`` with the per-channel
  multiplier ``m = float32(float32(x_scale * w_scale) / y_scale)``: the
  ConvSym kernels (AVX2, AVX-512, VNNI, NEON) and ``MlasRequantizeOutput``
  all do exactly this. The int32 sum is exact on every CPU only if no
  kernel saturates on the way: x86 without VNNI multiplies with
  ``vpmaddubsw``, which adds *pairs* of u8 x s8 products into a saturating
  int16, hence :func:`pair_sum_bound`;
- ``MaxPool`` on uint8 codes: exact;
- ``QLinearAdd``: exact only when both inputs and the output share one scale
  (x86 AVX2 computes in float32 with FMA, SSE2 without, NEON in fixed point
  with rounding half away from zero: they agree only when there is nothing
  to round), hence :func:`check_portable`;
- ``DequantizeLinear``: ``float32(q - zp) * scale`` (one rounding).

:func:`run_reference` executes a graph that way and must equal onnxruntime's
output bit for bit (``tests/trainer/test_int8_exact.py``). It reads the
graph with ``onnx`` only; onnxruntime is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edge.errors import EcgEdgeError

INT16_MAX = 32767
U8_MAX = 255


@dataclass(frozen=True)
class QTensor:
    """Integer codes with their (per-tensor) scale and zero point."""

    codes: np.ndarray  # int32
    scale: np.float32
    zero_point: int


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def conv_weights(model: onnx.ModelProto | str | Path) -> dict[str, np.ndarray]:
    """Conv name -> its int8 weight codes (M, C, K), read from the weight's DequantizeLinear."""
    g = _load(model).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    dq = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    out = {}
    for n in g.node:
        if n.op_type == "Conv" and n.input[1] in dq and dq[n.input[1]].input[0] in init:
            out[n.name or n.output[0]] = init[dq[n.input[1]].input[0]]
    return out


def pair_sum_bound(model: onnx.ModelProto | str | Path) -> int:
    """The largest |u8 x w1 + u8' x w2| any conv of the graph can form (int16 pair sums).

    x86 without VNNI (AVX2, AVX-512 without VNNI) runs U8S8 convolutions
    with ``vpmaddubsw``, which multiplies activation codes (0..255) by
    weight codes and adds adjacent pairs into a *saturating* int16. Which
    two weights of an output channel are paired depends on the packing, so
    the bound takes the two largest |w| of each output channel:
    ``255 * (|w|_1st + |w|_2nd)``. At most 32767 means no pair ever
    saturates, on any packing. (NEON pairs ``(u8 - 128) x w`` in int16:
    ``128 * 2 * 127`` fits even at full range.)
    """
    worst = 0
    for w in conv_weights(model).values():
        a = np.sort(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1), axis=1)
        top2 = a[:, -1] + (a[:, -2] if a.shape[1] > 1 else 0)
        worst = max(worst, int(U8_MAX * top2.max()))
    return worst


def add_scales(model: onnx.ModelProto | str | Path) -> list[tuple[float, float, float]]:
    """(scale A, scale B, scale of the output) of every quantized residual ``Add``."""
    g = _load(model).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons = _consumers(g)
    out = []
    for n in g.node:
        if n.op_type != "Add":
            continue
        ins = [prod.get(i) for i in n.input]
        q = [c for c in cons.get(n.output[0], []) if c.op_type == "QuantizeLinear"]
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in ins) or not q:
            raise EcgEdgeError(
                f"Add {n.name!r} is not quantized (no DequantizeLinear/QuantizeLinear)"
            )
        sa, sb = (float(init[p.input[1]]) for p in ins)
        out.append((sa, sb, float(init[q[0].input[1]])))
    return out


def check_portable(model: onnx.ModelProto | str | Path) -> dict:
    """Refuse an int8 graph whose integer result could depend on the CPU; return its figures.

    Two conditions, each one a proof rather than a measurement: no U8S8
    pair sum can saturate int16 (:func:`pair_sum_bound` <= 32767), and every
    residual Add has one scale for its inputs and output (then every
    QLinearAdd kernel adds integers and rounds nothing).
    """
    bound = pair_sum_bound(model)
    if bound > INT16_MAX:
        raise EcgEdgeError(
            f"int8 weights too large for x86 without VNNI: a u8 x s8 pair sum can reach {bound} "
            f"> {INT16_MAX} (vpmaddubsw saturates); quantize with 7-bit weights (reduce_range)"
        )
    adds = add_scales(model)
    bad = [s for s in adds if not s[0] == s[1] == s[2]]
    if bad:
        raise EcgEdgeError(
            f"{len(bad)} residual Add(s) with unequal scales (first {bad[0]}): QLinearAdd rounds "
            "differently on AVX2, SSE2 and NEON; share one scale per Add"
        )
    return {"pair_sum_bound": bound, "int16_max": INT16_MAX, "residual_adds": len(adds)}


def _quantize(
    x: np.ndarray, scale: np.float32, zp: int, lo: int = 0, hi: int = U8_MAX
) -> np.ndarray:
    q = np.rint(np.asarray(x, np.float32) / scale)  # float32 division, then half to even
    return np.clip(q + zp, lo, hi).astype(np.int32)


def _requantize(acc: np.ndarray, mult: np.ndarray, zp: int) -> np.ndarray:
    """int32 accumulators -> uint8 codes: float32(acc) * mult, half to even, + zp, clamp."""
    if np.abs(acc).max(initial=0) >= 2**31:
        raise EcgEdgeError("int32 accumulator overflow in the int8 reference")
    f = acc.astype(np.float32) * mult
    return np.clip(np.rint(f) + zp, 0, U8_MAX).astype(np.int32)


def _conv_acc(
    x: QTensor, w: np.ndarray, bias: np.ndarray | None, attrs: dict, saturate_pairs: bool = False
) -> np.ndarray:
    """(N, M, T_out) int64 sums of (x - x_zp) * w (+ bias) of a 1-D convolution.

    Exact, or with ``saturate_pairs`` as x86 AVX2 forms them: raw u8 codes
    (padding = the zero point) times weights, input channels paired (c, c+1)
    at each tap and each pair clipped to int16 (``vpmaddubsw``), the zero
    point taken out afterwards through the weights' sums.
    """
    if attrs.get("group", 1) != 1 or w.ndim != 3:
        raise EcgEdgeError("the int8 reference handles 1-D, group 1 convolutions only")
    k = w.shape[2]
    stride = attrs.get("strides", [1])[0]
    dil = attrs.get("dilations", [1])[0]
    pads = attrs.get("pads", [0, 0])
    zp = 0 if saturate_pairs else x.zero_point
    xi = np.pad(x.codes.astype(np.int64) - zp, ((0, 0), (0, 0), (pads[0], pads[1])),
                constant_values=x.zero_point - zp)  # fmt: skip
    span = dil * (k - 1) + 1
    t_out = (xi.shape[2] - span) // stride + 1
    cols = np.lib.stride_tricks.sliding_window_view(xi, span, axis=2)[:, :, ::stride][:, :, :t_out]
    cols = cols[..., ::dil]  # (N, C, T_out, K)
    wi = w.astype(np.int64)
    if not saturate_pairs:
        acc = np.einsum("nctk,mck->nmt", cols, wi, optimize=True)
    else:
        if w.shape[1] % 2:
            raise EcgEdgeError("pair emulation needs an even number of input channels")
        acc = np.zeros((cols.shape[0], w.shape[0], t_out), np.int64)
        for i in range(cols.shape[0]):
            pair = np.einsum("ctk,mck->mctk", cols[i, 0::2], wi[:, 0::2])
            pair += np.einsum("ctk,mck->mctk", cols[i, 1::2], wi[:, 1::2])
            acc[i] = np.clip(pair, -32768, INT16_MAX).sum(axis=(1, 3))
        acc -= x.zero_point * wi.sum(axis=(1, 2))[None, :, None]
    if bias is not None:
        acc = acc + bias.astype(np.int64)[None, :, None]
    return acc


def _maxpool(x: QTensor, attrs: dict) -> QTensor:
    k = attrs["kernel_shape"][0]
    stride = attrs.get("strides", [1])[0]
    pads = attrs.get("pads", [0, 0])
    if attrs.get("ceil_mode", 0) or attrs.get("dilations", [1])[0] != 1:
        raise EcgEdgeError("the int8 reference handles MaxPool without ceil_mode/dilation")
    c = np.pad(x.codes, ((0, 0), (0, 0), (pads[0], pads[1])), constant_values=-1)
    win = np.lib.stride_tricks.sliding_window_view(c, k, axis=2)[:, :, ::stride]
    return QTensor(win.max(axis=3).astype(np.int32), x.scale, x.zero_point)


def run_reference(
    model: onnx.ModelProto | str | Path, x: np.ndarray, saturate_pairs: bool = False
) -> np.ndarray:
    """The QDQ int8 graph's output for float32 input ``x``, computed in integers.

    Handles what :func:`trainer.export.quantize_int8` writes for Model 1 and
    Model 2: QuantizeLinear of the input, Conv (ReLU folded into the output's
    zero point, or an explicit Relu), MaxPool, residual Add, DequantizeLinear
    of the output. Anything else raises :class:`EcgEdgeError` rather than
    guessing. ``saturate_pairs`` emulates x86 without VNNI (see
    :func:`_conv_acc`): equal to the exact result when :func:`pair_sum_bound`
    holds, and, on a full-range graph, a way to see what such a CPU computes.
    """
    m = _load(model)
    g = m.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    env: dict[str, object] = {g.input[0].name: np.asarray(x, np.float32)}
    pending: dict[str, tuple] = {}  # float-domain results awaiting their QuantizeLinear

    def qparams(node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        s = init[node.input[1]].astype(np.float32)
        zp = (
            init[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        )
        return s, zp

    for n in g.node:
        op, a = n.op_type, _attrs(n)
        if op == "QuantizeLinear":
            s, zp = qparams(n)
            if zp.dtype != np.uint8 or s.size != 1:
                raise EcgEdgeError(f"{n.name}: activations must be per-tensor uint8")
            s, zpi = np.float32(s.reshape(())), int(zp.reshape(()))
            src = n.input[0]
            if src in pending:
                kind, payload = pending.pop(src)
                if kind == "conv":
                    acc, xs, ws = payload
                    mult = (np.float32(xs) * ws.astype(np.float32)) / s  # as QLinearConv does
                    env[n.output[0]] = QTensor(_requantize(acc, mult[None, :, None], zpi), s, zpi)
                elif kind == "add":
                    qa, qb = payload
                    if not (qa.scale == qb.scale == s):
                        raise EcgEdgeError(
                            f"{n.name}: residual Add with unequal scales: no CPU-independent result"
                        )
                    total = (qa.codes - qa.zero_point) + (qb.codes - qb.zero_point) + zpi
                    env[n.output[0]] = QTensor(np.clip(total, 0, U8_MAX).astype(np.int32), s, zpi)
                else:  # "same": MaxPool/Relu already on codes; Q with the same params is identity
                    q = payload
                    if q.scale != s or q.zero_point != zpi:
                        raise EcgEdgeError(f"{n.name}: requantization after {kind} not supported")
                    env[n.output[0]] = q
            else:
                env[n.output[0]] = QTensor(_quantize(env[src], s, zpi), s, zpi)
        elif op == "DequantizeLinear":
            src = n.input[0]
            if src in init:  # a weight or bias: keep its codes and scales
                s, zp = qparams(n)
                if np.any(zp != 0):
                    raise EcgEdgeError(
                        f"{n.name}: weights and biases must be symmetric (zero point 0)"
                    )
                env[n.output[0]] = ("const", init[src], s)
            else:
                env[n.output[0]] = ("dq", env[src])
        elif op == "Conv":
            (_, xq), (_, w, ws) = env[n.input[0]], env[n.input[1]]
            bias = env[n.input[2]][1] if len(n.input) > 2 and n.input[2] else None
            if w.dtype != np.int8:
                raise EcgEdgeError(f"{n.name}: weights must be int8")
            acc = _conv_acc(xq, w, bias, a, saturate_pairs)
            pending[n.output[0]] = ("conv", (acc, xq.scale, ws.reshape(-1)))
        elif op == "MaxPool":
            _, xq = env[n.input[0]]
            pending[n.output[0]] = ("maxpool", _maxpool(xq, a))
        elif op == "Relu":
            _, xq = env[n.input[0]]
            q = QTensor(np.maximum(xq.codes, xq.zero_point), xq.scale, xq.zero_point)
            pending[n.output[0]] = ("relu", q)
        elif op == "Add":
            (_, qa), (_, qb) = env[n.input[0]], env[n.input[1]]
            pending[n.output[0]] = ("add", (qa, qb))
        else:
            raise EcgEdgeError(f"the int8 reference does not implement {op} ({n.name})")

    out = env[g.output[0].name]
    if not (isinstance(out, tuple) and out[0] == "dq"):
        raise EcgEdgeError("the graph's output is not a DequantizeLinear of uint8 codes")
    q = out[1]
    return (q.codes - q.zero_point).astype(np.float32) * q.scale
