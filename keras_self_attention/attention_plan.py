"""How a `SeqSelfAttention` call is computed: every path, and the rule.

What a call computes never depends on its path (the tests hold each path to
the numpy reference); only time and memory do. The paths:

- `"fused"`: the backend's dot-product-attention op, for global
  multiplicative attention when nothing needs the weights and no activation
  changes the scores (`ba` shifts every score equally, so the softmax
  ignores it).
- `"band"`: local attention on the window only: `(batch, T, w)` scores,
  time and memory linear in `T`; multiplicative ones from blocks of
  queries against the keys their windows cover, additive ones from the
  band's whole hidden tensor, `(batch, w, T + w, units)`, in a few large
  kernels (`additive_scores.band_stack_additive_scores`).
- `"band_slots"`: additive local attention one window slot at a time
  (`additive_scores.band_additive_scores`): nothing the size of the band's
  hidden tensor, for sizes where it would not fit the budget.
- `"band_or_slots"`: `"band"` or `"band_slots"`, chosen when the call runs
  (`ops.cond`), for a graph traced before its sizes are known.
- `"dense"`: `(batch, T, T)` scores at once; additive ones from the whole
  hidden tensor (`additive_scores.dense_additive_scores`), with no loop.
- `"blocked"`: global additive attention with the hidden tensor built a few
  query rows at a time in a loop (`additive_scores.blocked_additive_scores`).
- `"dense_or_blocked"`: `"dense"` or `"blocked"`, chosen when the call runs
  (`ops.cond`), for a training graph traced before its batch size or length
  is known.
- `"per_unit"`: global additive attention without a gradient (`predict`,
  serving) summed over the hidden units one at a time
  (`additive_scores.per_unit_additive_scores`): no tensor larger than the
  scores and no loop op, so an exported model (whose batch size, at least,
  is unknown when traced) runs in runtimes that cannot run a loop, such as
  LiteRT's built-in ops and onnxruntime.
- `"dense_or_per_unit"`: `"dense"` or `"per_unit"`, chosen when the call
  runs (`ops.cond`, whose two branches have no loop), for inference traced
  before its sizes are known: the dense kernel is faster while it fits
  (TensorFlow, batch 32, `T = 50`: 3.4 ms against 4.3 ms).

The cost model, measured on TensorFlow, JAX and PyTorch on a 2-core CPU
(`benchmarks/benchmark.py` prints the path each configuration took):

- Additive attention's time is passes over its hidden tensor of
  `batch * T * S * units` elements. The dense kernel makes them in a few
  large kernels, so it is the fastest while the tensor fits in memory (at
  `T = 10` a whole training step takes 2 ms on TensorFlow); the blocked
  loop adds a fixed cost of several milliseconds and recomputes the `tanh`
  in the gradient, for a memory bound. The limits are memory budgets: a
  training step keeps about three tensors the size of the hidden one alive
  (`DENSE_HIDDEN_ELEMENTS`, per backend), inference one
  (`DENSE_INFERENCE_ELEMENTS`); on JAX and PyTorch the budget is a tensor
  of 16 MB (JAX) or 32 MB (PyTorch), beyond which every allocation faults
  its pages in afresh. PyTorch's CPU `tanh` kernel is slow, so there the
  kernels compute it from a sigmoid (`hidden_activation`). Without a
  gradient, beyond that budget or when the sizes are not known when traced,
  the per-unit sum takes about the dense kernel's time with the memory of
  the scores and no loop op; on TensorFlow the loop of large steps is on
  par (batch 32, `T = 1024`: 0.76 s against 0.70 s; batch 8, `T = 2048`:
  0.69 s against 0.81 s), so `predict` keeps the per-unit sum while its
  score-sized terms fit the allocator (`PER_UNIT_ELEMENTS`: on PyTorch
  `predict` takes the loop beyond).
- The dense kernel sums `h . w` over units as one matrix product, except in
  JAX inference: XLA fuses an elementwise product and sum into the `tanh`
  there, so `h` is never written (batch 32, `T = 200`: 31 ms against 60 ms);
  with a gradient to take the matrix product is faster there too (182 ms
  against 212 ms), and on TensorFlow and PyTorch always (`hidden_reduction`).
- Multiplicative scores are one matrix product. On a CPU the fused op
  materializes the `(batch, T, T)` scores as the dense path does, and is
  slower at short lengths (TensorFlow, batch 32, dim 128: 4.3 ms dense
  against 5.9 ms fused at `T = 50`; even at `T = 500`), so it is taken from
  `FUSED_MIN_LENGTH` on, and for training graphs traced with an unknown
  length; inference with an unknown length (an exported model) takes the
  dense path, which every runtime can run.
- The additive band costs `T * w` hidden entries per sequence against the
  dense `T * T`, and the multiplicative band about `T * 2w` in blocks of
  `block + w - 1` keys for at least `BAND_BLOCK` queries, but the band's
  plumbing (padding, stacking, the transposes) costs a few small ops each
  way, so it wins only once `T` is a few windows (additive) or a few key
  blocks (multiplicative) long: `BAND_CROSSOVER` holds those factors per
  backend, measured side by side with width 15, batch 32, dim 128 (e.g. a
  TensorFlow training step, additive: dense 7.1 ms against band 7.3 ms at
  `T = 40`, 7.4 against 7.1 at `T = 45`, 17.5 against 10.6 at `T = 75`).
  The additive band can also go one window slot at a time, with a written
  gradient that keeps nothing the size of the band's hidden tensor, in `w`
  slots' worth of small ops (13.6 ms at `T = 75`): it wins once each slot's
  ops are large, past `BAND_STACK_ELEMENTS`. A width above
  `MAX_BAND_WIDTH` is never unrolled.

On a GPU or TPU (`on_accelerator`, Keras's default device) each table's
`"accelerator"` entry applies instead, measured with PyTorch and JAX on an
H100: the loop's steps run one after another while the dense kernel fills
the device, so the dense kernel goes further, the loop takes blocks large
enough to fill the device (`BLOCK_ELEMENTS`), and the band and the fused op
pay off only at much greater lengths.

Every function here works on Python ints; `None` stands for a size not known
when the graph is traced.
"""

import math

import keras
from keras import ops

# Largest hidden tensor (batch * T * S * units elements) built whole in
# training, where the gradient keeps it and makes two more of its size. On
# TensorFlow 2**28 float32 elements peak at about 3 GB (batch 32, T = 500:
# 2.9 GB of RSS with TensorFlow's own 0.8 GB, 0.51 needs 4.0 GB there), and
# the loop costs 1.6x the time there (607 ms against 375 ms); with small
# batches the loop's blocks fit the cache better and it catches up (batch 8,
# T = 724: dense 220 ms against loop 237 ms; T = 1024: 574 against 502,
# 0.51: 675). JAX and PyTorch take each tensor from the C library's
# `malloc`, which maps large ones fresh from the system on every
# allocation, so each step faults their pages in again: past about 16 MB
# (JAX) or 32 MB (PyTorch) a tensor the dense kernel's time jumps (JAX,
# batch 32: 7.8 ms at T = 60, 28 ms at T = 70; PyTorch: 26 ms at T = 80,
# 90 ms at T = 100), and the loop, whose blocks stay small, wins (JAX:
# 11 ms at T = 70, 24 against 59 ms at T = 100; PyTorch: 69 against 90 ms
# at T = 100, 193 against 361 at T = 200).
# On a GPU (`"accelerator"`, any backend) the loop's steps run one after
# another where the dense kernel fills the device: PyTorch on an H100,
# batch 32, T = 500, a training step took 15.6 ms dense (2.9 GB peak)
# against 87 ms in the loop; the budget keeps the same 3 GB peak.
DENSE_HIDDEN_ELEMENTS = {
    "tensorflow": 2**28,
    "jax": 2**22,
    "torch": 2**23,
    "accelerator": 2**28,
}
# Inference keeps only the tensor itself; on PyTorch the per-unit sum,
# whose tensors are score-sized, is the faster beyond the same 32 MB
# (batch 32: 12.5 against 40.8 ms at T = 100, 56 against 138 at T = 200).
# XLA fuses JAX's dense inference kernel into one pass that writes no
# hidden tensor at all.
DENSE_INFERENCE_ELEMENTS = {
    "tensorflow": 2**29,
    "jax": 2**29,
    "torch": 2**23,
    "accelerator": 2**29,
}

# Largest `(batch, T, S)` term of the per-unit sum in `predict`, where the
# allocator maps each larger one afresh (see `DENSE_HIDDEN_ELEMENTS`):
# beyond, PyTorch's `predict` takes the blocked loop, which is a Python loop
# there and leaves no loop op in an export (batch 8, T = 2048: 1.13 s
# against 7.39 s; batch 32, T = 500, 32 MB terms: 683 ms against 525).
# `None`: no limit (the other backends, where the per-unit sum stays
# faster than their loop, and a GPU).
PER_UNIT_ELEMENTS = {"torch": 2**23, "accelerator": None}

# Elements of the hidden tensor in one step of the blocked loop, the whole
# batch's (a batch size not known when traced counts as 32, Keras's
# default); the steps run one after another, so this bounds the memory. On
# TensorFlow a step's fixed cost outweighs the cache: batch 8, dim 64,
# T = 2048, a training step took 3.80 s in steps of 2**20 elements (two
# query rows), 2.11 s in 2**22 or 2**23, 1.96 s in 2**24 (1.73 GB peak)
# and 1.85 s in 2**25 (2.20 GB), against 0.51's 2.44 s side by side;
# batch 32, dim 128, T = 1024: 2.11 to 2.16 s from 2**22 to 2**25. JAX's
# loop steps cost little (batch 32: 24 ms at T = 100, 77 at T = 200 with
# 2**20, against 47 and 110 with 2**22). On a GPU a step must fill the
# device (PyTorch on an H100, batch 8, T = 2048: 1.09 s a training step in
# the CPU's steps of two query rows, against 26 ms dense).
BLOCK_ELEMENTS = {
    "tensorflow": 2**24,
    "jax": 2**20,
    "torch": 2**22,
    "accelerator": 2**25,
}

# The band path is taken once `T` is this many windows long (additive:
# its whole hidden tensor, `"additive"`, or one slot at a time,
# `"additive_slots"`, where that does not fit `BAND_STACK_ELEMENTS`) or
# this many key blocks of `band_block(w) + w - 1` long (multiplicative).
# TensorFlow, width 15, batch 32, dense against the whole band: training
# steps 7.1 / 7.3 ms at T = 40, 7.4 / 7.1 at 45; `predict` 2.9 / 3.3 at
# 40, 3.1 / 3.1 at 45. Where the whole band is not measured
# (`BAND_STACK_ELEMENTS`) there is no `"additive"` entry.
# On a GPU the dense scores stay faster for much longer (PyTorch on an H100,
# width 15, training steps: additive, batch 8, dense 9.9 ms against band
# 27.5 ms at T = 1024, 29 against 20 at T = 2048; multiplicative, batch 32,
# T = 500, 9.6 against 15.6, batch 8, T = 2048, 6.6 against 8.4).
BAND_CROSSOVER = {
    "tensorflow": {
        "additive": 3.0,
        "additive_slots": 5.0,
        "multiplicative": 3.2,
    },
    "jax": {"additive_slots": 3.5, "multiplicative": 2.0},
    "torch": {"additive_slots": 2.5, "multiplicative": 1.9},
    "accelerator": {"additive_slots": 100, "multiplicative": 32},
}

# The additive band's whole hidden tensor, `batch * w * (T + w) * units`
# elements, up to these budgets with a gradient to take (`"training"`) and
# without (`"inference"`); one slot at a time beyond, where each slot's
# ops are large enough for the slots' smaller memory traffic to win. Width
# 15, batch 32, band against slots, TensorFlow: training 21.5 / 25.7 ms at
# T = 200, 48.0 / 52.9 at 500 (batch 8, dim 64, T = 2048: 35.6 ms, 0.83 GB
# peak, as the slots); `predict` 4.4 / 4.6 at 50, 6.3 / 6.1 at 100, 11.3 /
# 10.6 at 200. `None` or no entry: the slots only. JAX and PyTorch, side by
# side with the slots in one process: JAX on par at T = 60 to 130 (9.3
# against 9.3 ms at 60, 12.4 against 13.1 at 130), slower at 200 (25.6
# against 19.4); PyTorch slower from 75 (training 20.6 against 17.2 ms at
# 100, `predict` 14.9 against 8.8): their allocators again. A GPU: only the
# slots were measured.
BAND_STACK_ELEMENTS = {
    "tensorflow": {"training": 2**23, "inference": 2**20},
    "accelerator": None,
}

# Local attention's outputs (and multiplicative scores) are small dense
# matrix products over blocks of this many queries.
BAND_BLOCK = 64

# The masked softmax is written out (maximum, exponentials, sum, quotient)
# for score tensors up to this many elements, a known size; the backend's
# op beyond. TensorFlow's oneDNN softmax costs a fixed few hundredths of a
# millisecond a call, which is most of a short sequence's softmax: forward
# and forward-with-gradient, written against the op, `(32, 5, 5)` 0.28 /
# 0.32 ms against 0.35 / 0.36; `(32, 20, 20)` 0.31 / 0.37 against 0.37 /
# 0.41; `(32, 50, 15)` 0.35 / 0.44 against 0.40 / 0.42; `(32, 35, 35)`
# 0.42 / 0.54 against 0.39 / 0.44. JAX's compiler fuses either form, and
# PyTorch's op is one kernel against the written form's four.
WRITTEN_SOFTMAX_ELEMENTS = {"tensorflow": 2**15, "accelerator": None}

# Global multiplicative attention without weights takes the fused op from
# this length on (measured crossovers on a CPU: JAX about 350, TensorFlow
# and PyTorch above 1000; on an H100, PyTorch, batch 32: 5.3 ms fused
# against 5.0 ms dense at T = 256, 6.8 against 8.2 at T = 500).
FUSED_MIN_LENGTH = {
    "tensorflow": 1024,
    "jax": 384,
    "torch": 1024,
    "accelerator": 512,
}

# How the additive kernels make the `tanh` of the hidden tensor, where not
# with the tanh itself: PyTorch's CPU `tanh` is a slow, exact kernel (10M
# float32 elements, 2 threads: 13.1 ms against 2.7 ms for `sigmoid`);
# TensorFlow's and XLA's `tanh` are the faster there (2.7 against 3.5 ms,
# 2.3 against 2.7 ms). A GPU keeps the `tanh` it was measured with.
HIDDEN_ACTIVATION = {"torch": "sigmoid", "accelerator": "tanh"}

# Wider windows are computed densely: the band path unrolls one step per
# window slot.
MAX_BAND_WIDTH = 1024

PATHS = (
    "fused",
    "band",
    "band_slots",
    "band_or_slots",
    "dense",
    "blocked",
    "dense_or_blocked",
    "per_unit",
    "dense_or_per_unit",
)


# Whether Keras's default device is an accelerator, once known: a list of
# one bool (see `on_accelerator`).
_ON_ACCELERATOR = []


def on_accelerator():
    """Whether Keras computes on a GPU or TPU rather than on the CPU.

    Read from Keras's default device: the one listed first (JAX, TensorFlow),
    or where a new tensor is placed (PyTorch, whose backend lists no
    devices), and remembered. While Keras traces a model on PyTorch, a new
    tensor goes to the "meta" device, which computes nothing: the answer is
    then not known, and the CPU's serves for that call, whose path only
    shapes come out of.
    """
    if _ON_ACCELERATOR:
        return _ON_ACCELERATOR[0]
    try:
        device = str(keras.distribution.list_devices()[0])
    except (AttributeError, IndexError):
        # PyTorch's backend has no device listing (`AttributeError`); an
        # empty list (`IndexError`) falls back the same way.
        device = str(getattr(ops.convert_to_tensor(0.0), "device", "cpu"))
        if device == "meta":
            return False
    # "gpu:0", "cuda:0", "tpu:0" against "cpu:0", TensorFlow's
    # ".../device:CPU:0" or JAX's "TFRT_CPU_0".
    _ON_ACCELERATOR.append("cpu" not in device.lower())
    return _ON_ACCELERATOR[0]


def measured(table, default):
    """This device's entry of one of the tables above.

    The `"accelerator"` entry on a GPU or TPU, else the backend's own CPU
    measurement, else `default` (Keras's numpy and OpenVINO backends, which
    the project does not measure).
    """
    if "accelerator" in table and on_accelerator():
        return table["accelerator"]
    return table.get(keras.backend.backend(), default)


def block_elements():
    """Elements of the hidden tensor in one step of the blocked loop."""
    return measured(BLOCK_ELEMENTS, 2**22)


# The paths that attend to the window only, with `(batch, T, w)` weights.
BAND_PATHS = ("band", "band_slots", "band_or_slots")


def dense_hidden_fits(batch_size, length, units, training=True):
    """Whether the whole additive hidden tensor fits the memory budget.

    Works on Python ints and on scalar tensors alike (then it returns a
    boolean tensor, for `ops.cond`). `training=False` means no gradient
    will be taken, so nothing is kept for one.
    """
    budget = measured(DENSE_INFERENCE_ELEMENTS, 2**29)
    if training is not False:
        budget = measured(DENSE_HIDDEN_ELEMENTS, 2**22)
    return batch_size * length * length * units <= budget


def band_hidden_fits(batch_size, length, attention_width, units, training=True):
    """Whether the additive band's whole hidden tensor fits its budget.

    Works on Python ints and on scalar tensors alike, as
    `dense_hidden_fits`; only where `band_stack_measured()`.
    """
    budgets = measured(BAND_STACK_ELEMENTS, None)
    budget = budgets["inference" if training is False else "training"]
    columns = length + attention_width  # `window_stack`'s rows
    return batch_size * attention_width * columns * units <= budget


def per_unit_fits(batch_size, length):
    """Whether the per-unit sum's `(batch, T, T)` terms fit their budget."""
    budget = measured(PER_UNIT_ELEMENTS, None)
    return budget is None or batch_size * length * length <= budget


def hidden_reduction(training):
    """How the dense additive kernel sums `h . w`: `"matmul"` or `"sum"`."""
    if keras.backend.backend() == "jax" and training is False:
        return "sum"
    return "matmul"


def hidden_activation():
    """How the additive kernels make the `tanh`: `"tanh"` or `"sigmoid"`.

    `tanh(x) = 2 sigmoid(2x) - 1` (see `additive_scores`); the sigmoid is
    taken where its kernel is the faster one (`HIDDEN_ACTIVATION`).
    """
    return measured(HIDDEN_ACTIVATION, "tanh")


def band_block(attention_width):
    """Queries per block of the band's blocked matrix products."""
    return max(BAND_BLOCK, attention_width - 1)


def written_softmax(shape):
    """Whether a softmax over scores of this static shape is written out.

    `shape` is a tuple of Python ints, `None` for a size not known when
    traced (then the backend's op).
    """
    budget = measured(WRITTEN_SOFTMAX_ELEMENTS, None)
    if budget is None or any(size is None for size in shape):
        return False
    return math.prod(shape) <= budget


def fused_min_length():
    """The shortest `T` for which the fused op beats the dense path."""
    return measured(FUSED_MIN_LENGTH, 1024)


def band_stack_measured():
    """Whether the additive band's whole hidden tensor is ever built here."""
    return measured(BAND_STACK_ELEMENTS, None) is not None


def band_min_length(kernel, attention_width):
    """The shortest `T` for which the band beats the dense scores.

    `kernel` is `"additive"` (the whole band), `"additive_slots"` or
    `"multiplicative"`.
    """
    factors = measured(BAND_CROSSOVER, BAND_CROSSOVER["tensorflow"])
    if kernel != "multiplicative":
        span = attention_width
    else:
        span = band_block(attention_width) + attention_width - 1
    return max(attention_width + 1, int(factors[kernel] * span))


def _additive_band_path(
    attention_width, batch_size, length, units, symbolic, training
):
    """The band path of additive local attention, or `None` for no band.

    The whole band where it fits its budget; when the sizes are unknown, a
    choice at run time in training (a graph with a gradient), else the
    slots, which every exporter follows.
    """
    if band_stack_measured() and (
        length is None or length >= band_min_length("additive", attention_width)
    ):
        if batch_size is not None and length is not None:
            if band_hidden_fits(
                batch_size, length, attention_width, units, training
            ):
                return "band"
        elif training is True and not symbolic:
            return "band_or_slots"
    if length is None or length >= band_min_length(
        "additive_slots", attention_width
    ):
        return "band_slots"
    return None


def choose_path(
    attention_type,
    attention_width,
    needs_weights,
    batch_size,
    length,
    units,
    symbolic=False,
    training=True,
):
    """The path of one call.

    Args:
        attention_type: `"additive"` or `"multiplicative"`.
        attention_width: the local window's width, or `None`.
        needs_weights: whether the call needs the `(T, T)` weights (for
            `return_attention`, the regularizer) or changes the scores
            (`attention_activation`), which rules out `"fused"`.
        batch_size: the batch size, or `None` if not known yet.
        length: `T`, or `None` if not known yet.
        units: the additive hidden size.
        symbolic: whether unknown sizes are symbolic dimensions that cannot
            be compared at run time either (JAX's shape polymorphism when
            exporting).
        training: Keras's `training` flag: `True` in `fit`, `False` in
            `predict`, `None` in a direct call (and when a model is
            exported). A loop (`"blocked"`) or the fused op for an unknown
            length is only taken for `True` (and the loop for `False` on
            PyTorch, where it is a Python loop, past `PER_UNIT_ELEMENTS`);
            any other call gets a path that every runtime can run. Unless
            it is `False`, a gradient may be taken, which keeps the smaller
            memory budget.

    Returns:
        One of `PATHS`.
    """
    # JAX's ONNX exporter cannot follow the band's reshapes of a symbolic
    # length, so an exported JAX model attends densely.
    exported = symbolic and training is not True
    if (
        attention_width is not None
        and attention_width <= MAX_BAND_WIDTH
        and not exported
    ):
        if attention_type == "additive":
            path = _additive_band_path(
                attention_width, batch_size, length, units, symbolic, training
            )
            if path is not None:
                return path
        elif length is None or length >= band_min_length(
            "multiplicative", attention_width
        ):
            return "band"
    if attention_type == "multiplicative":
        if attention_width is None and not needs_weights:
            if length is None and training is True:
                return "fused"
            if length is not None and length >= fused_min_length():
                return "fused"
        # Also for inference traced with an unknown T, as an exported model
        # is: a matrix product and a softmax run in every runtime, where the
        # fused op's shape handling does not (LiteRT's converter).
        return "dense"
    # Additive attention over all keys, or a window too wide for the band.
    if (
        batch_size is not None
        and length is not None
        and dense_hidden_fits(batch_size, length, units, training)
    ):
        return "dense"
    known = batch_size is not None and length is not None
    beyond = "blocked" if training is True else "per_unit"
    if training is False and known and not per_unit_fits(batch_size, length):
        beyond = "blocked"
    if known or symbolic:
        return beyond
    return f"dense_or_{beyond}"
