"""Every path of `attention_plan` agrees with the dense formulas.

Each case runs the layer twice, once forced onto the path under test and
once onto the dense path, and compares outputs and gradients; the rule that
picks a path is tested on its own.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import (
    SeqSelfAttention,
    additive_scores,
    attention_ops,
    attention_plan,
)
from tests import numpy_reference
from tests.gradients import layer_gradients
from tests.layer_checks import assert_fit_improves
from tests.test_seq_self_attention import make_inputs, randomize, reference

LENGTH = 9


def build(rng, **kwargs):
    layer = SeqSelfAttention(units=5, **kwargs)
    layer.build((None, None, 4))
    randomize(layer, rng)
    return layer


def forced(layer, path):
    """A copy of `layer`, same weights, that always takes `path`."""
    copy = SeqSelfAttention.from_config(layer.get_config())
    copy.build((None, None, 4))
    copy.set_weights(layer.get_weights())
    copy._attention_path = lambda inputs, training=None: path
    return copy


def path_of(layer, shape, training=True):
    return layer._attention_path(keras.KerasTensor(shape), training)


def compare_with_dense(layer, x, mask, rng, path=None, training=None):
    """`layer` (forced onto `path`, if given) against the dense path."""
    if path is not None:
        layer = forced(layer, path)
    cotangent = rng.standard_normal(x.shape).astype("float32")
    output, grads = layer_gradients(layer, x, mask, cotangent, training)
    expected_output, expected_grads = layer_gradients(
        forced(layer, "dense"), x, mask, cotangent, training
    )
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(expected_grads)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


BAND_CASES = [
    (path, attention_type, width, history_only, padded)
    for path, attention_type in (
        ("band", "additive"),
        ("band_slots", "additive"),
        ("band", "multiplicative"),
    )
    for width, history_only, padded in itertools.product(
        [1, 2, 3, 4, 8], [False, True], [False, True]
    )
]


@pytest.mark.parametrize(
    "path,attention_type,width,history_only,padded", BAND_CASES
)
@pytest.mark.parametrize("training", [None, True])
def test_band_path_matches_dense(
    rng, path, attention_type, width, history_only, padded, training
):
    # On `band_slots`, `training=True` takes the additive band's written
    # gradient, any other call its rematerialized slots. (`LENGTH` is
    # shorter than some widths' window slots, and spans one of the
    # multiplicative band's blocks.)
    layer = build(
        rng,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
        attention_activation="sigmoid",
        attention_regularizer_weight=0.1,
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=padded)
    compare_with_dense(layer, x, mask, rng, path=path, training=training)


@pytest.mark.parametrize("training", [None, True])
def test_band_run_time_choice_runs_the_kernel_that_fits(
    rng, monkeypatch, training
):
    layer = build(rng, attention_width=3)
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    mask = ops.convert_to_tensor(mask)
    expected = ops.convert_to_numpy(forced(layer, "dense")(x, mask=mask))
    for kernel in ("band_stack_additive_scores", "band_additive_scores"):
        # One kernel gives zero scores (a uniform window), so that which one
        # ran shows. (`ops.cond` may trace both branches, so counting calls
        # would not tell.)
        with monkeypatch.context() as patch:
            real = getattr(additive_scores, kernel)
            patch.setattr(
                additive_scores, kernel, lambda *a, real=real: real(*a) * 0.0
            )
            for fits in (True, False):
                patch.setattr(
                    attention_plan,
                    "band_hidden_fits",
                    lambda *_, fits=fits: fits,
                )
                output = forced(layer, "band_or_slots")(
                    x, mask=mask, training=training
                )
                output = ops.convert_to_numpy(output)
                whole_ran = fits
                zeroed = whole_ran == (kernel == "band_stack_additive_scores")
                assert np.allclose(output, expected, atol=1e-6) != zeroed


@pytest.mark.parametrize("history_only", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_path_matches_dense(rng, history_only, padded):
    layer = build(
        rng, attention_type="multiplicative", history_only=history_only
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=padded)
    if padded:
        mask[1] = False  # a query with no key at all
        mask[2, :4] = False  # causal queries before the first real key
    compare_with_dense(layer, x, mask, rng, path="fused")
    outputs, _, _ = reference(layer, x, mask)
    fused = forced(layer, "fused")
    np.testing.assert_allclose(
        ops.convert_to_numpy(
            fused(x, mask=None if mask is None else ops.convert_to_tensor(mask))
        ),
        outputs,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("history_only", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_per_unit_additive_path_matches_dense(rng, history_only, padded):
    # An inference path, but its gradient is right too.
    layer = build(
        rng, history_only=history_only, attention_regularizer_weight=0.1
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=padded)
    compare_with_dense(layer, x, mask, rng, path="per_unit")


@pytest.mark.parametrize("history_only", [False, True])
@pytest.mark.parametrize("block_elements", [1, 2**17])
@pytest.mark.parametrize("path", ["blocked", "dense_or_blocked"])
def test_blocked_additive_path_matches_dense(
    rng, history_only, block_elements, path, monkeypatch
):
    layer = build(
        rng, history_only=history_only, attention_regularizer_weight=0.1
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    # One hidden unit per block, or all rows in one; and the run-time choice
    # pushed onto the loop.
    monkeypatch.setattr(
        attention_plan, "block_elements", lambda: block_elements
    )
    monkeypatch.setattr(attention_plan, "dense_hidden_fits", lambda *_: False)
    compare_with_dense(layer, x, mask, rng, path=path)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize(
    "path,width,training",
    [
        ("dense", None, None),
        ("blocked", None, True),
        ("blocked", None, False),
        ("per_unit", None, False),
        ("band", 3, True),
        ("band", 3, None),
        ("band_slots", 3, True),
        ("band_slots", 3, None),
    ],
)
def test_additive_kernels_make_the_tanh_either_way(
    rng, monkeypatch, activation, path, width, training
):
    # `tanh(x) = 2 sigmoid(2x) - 1`: each backend runs one form, so both are
    # held here to the numpy reference and to the dense tanh's gradients.
    layer = build(rng, attention_width=width, attention_activation="sigmoid")
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    cotangent = rng.standard_normal(x.shape).astype("float32")
    backend = keras.backend.backend()
    monkeypatch.setattr(attention_plan, "HIDDEN_ACTIVATION", {})
    _, expected_grads = layer_gradients(
        forced(layer, "dense"), x, mask, cotangent
    )
    monkeypatch.setattr(
        attention_plan, "HIDDEN_ACTIVATION", {backend: activation}
    )
    # Several blocks of the loop: one query row each.
    monkeypatch.setattr(attention_plan, "block_elements", lambda: 1)
    output, grads = layer_gradients(
        forced(layer, path), x, mask, cotangent, training
    )
    expected_output, _, _ = reference(layer, x, mask)
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "path,beyond,training",
    [
        ("dense_or_blocked", "blocked_additive_scores", True),
        ("dense_or_per_unit", "per_unit_additive_scores", False),
    ],
)
def test_run_time_choice_runs_the_kernel_that_fits(
    rng, monkeypatch, path, beyond, training
):
    layer = build(rng)
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    mask = ops.convert_to_tensor(mask)
    expected = ops.convert_to_numpy(forced(layer, "dense")(x, mask=mask))
    # A kernel beyond the budget that gives zero scores, so that its result
    # shows. (`ops.cond` may trace both branches, so counting calls would
    # not tell.)
    dense_kernel = additive_scores.dense_additive_scores
    monkeypatch.setattr(
        additive_scores, beyond, lambda *args: dense_kernel(*args) * 0.0
    )
    layer = forced(layer, path)
    for fits in (True, False):
        monkeypatch.setattr(
            attention_plan, "dense_hidden_fits", lambda *_, fits=fits: fits
        )
        output = layer(x, mask=mask, training=training)
        output = ops.convert_to_numpy(output)
        assert np.allclose(output, expected, atol=1e-6) == fits


def test_path_choice(monkeypatch):
    # The CPU's cost model (on a GPU, see the next test).
    monkeypatch.setattr(attention_plan, "on_accelerator", lambda: False)
    backend = keras.backend.backend()
    activation = "sigmoid" if backend == "torch" else "tanh"
    assert attention_plan.hidden_activation() == activation
    add = SeqSelfAttention
    mul = dict(attention_type="multiplicative")
    small, large = (32, 50, 128), (8, 2048, 64)
    assert path_of(add(), small) == "dense"
    assert path_of(add(), large) == "blocked"
    assert path_of(add(units=1), (1, 2048, 64)) == "dense"
    # Without a gradient to keep for, longer sequences fit the dense kernel
    # (on PyTorch, whose budget is the allocator's, the per-unit sum).
    medium = (32, 600, 128)
    assert path_of(add(), medium) == "blocked"
    assert path_of(add(), medium, training=True) == "blocked"
    inference_budget = attention_plan.measured(
        attention_plan.DENSE_INFERENCE_ELEMENTS, None
    )
    beyond = 32 * 600 * 600 * 32 > inference_budget
    assert beyond == (keras.backend.backend() == "torch")
    expected = "per_unit" if beyond else "dense"
    if backend == "torch":
        # Its per-unit terms past the allocator's 32 MB: PyTorch's loop,
        # a Python loop.
        expected = "blocked"
    assert path_of(add(), medium, training=False) == expected
    # Without a gradient, beyond the budget: the per-unit sum, with no loop
    # op; with sizes unknown when traced (an exported model), it or the
    # dense kernel as the call runs, neither with a loop.
    # (on PyTorch, past its allocator's budget for the per-unit terms, the
    # loop, which is a Python loop there)
    expected = "blocked" if backend == "torch" else "per_unit"
    assert path_of(add(), large, training=False) == expected
    for unknown in ((None, 50, 128), (32, None, 128), (None, None, 128)):
        assert path_of(add(), unknown, training=False) == "dense_or_per_unit"
        # A direct call, or an export: no loop either.
        assert path_of(add(), unknown, training=None) == "dense_or_per_unit"
    # A direct call may be under a gradient tape: the training budget.
    assert path_of(add(), medium, training=None) == "per_unit"
    assert path_of(add(), small, training=None) == "dense"
    # Sizes unknown when traced: decided when the call runs.
    assert path_of(add(), (None, 50, 128)) == "dense_or_blocked"
    assert path_of(add(), (32, None, 128)) == "dense_or_blocked"
    assert path_of(add(), (None, None, 128)) == "dense_or_blocked"
    # The fused op only where it beats the dense scores; always for
    # unknown T.
    assert path_of(add(**mul), (None, None, 128)) == "fused"
    # ... except without a gradient (an exported model): the dense scores,
    # which every runtime can run.
    assert path_of(add(**mul), (None, None, 128), training=False) == "dense"
    long = (8, attention_plan.fused_min_length(), 64)
    assert path_of(add(history_only=True, **mul), long) == "fused"
    assert path_of(add(**mul), small) == "dense"
    for needs_weights in (
        dict(return_attention=True),
        dict(attention_activation="tanh"),
        dict(attention_regularizer_weight=0.1),
    ):
        assert path_of(add(**needs_weights, **mul), long) == "dense"
        assert path_of(add(**needs_weights), small) == "dense"
    # The band only where it beats the dense scores; always for unknown T.
    # Additive: the whole band while it fits its budget, one slot at a time
    # beyond, and for unknown sizes without a gradient (an export).
    # Measured (and taken) on TensorFlow only.
    stack = attention_plan.band_stack_measured()
    assert stack == (backend == "tensorflow")
    additive = "additive" if stack else "additive_slots"
    cases = [
        (kwargs, kernel, training)
        for kwargs, kernel in (({}, additive), (mul, "multiplicative"))
        for training in (True, False, None)
    ]
    for kwargs, kernel, training in cases:
        layer = add(attention_width=15, **kwargs)
        shortest = attention_plan.band_min_length(kernel, 15)
        assert 15 < shortest <= 320
        at_shortest = path_of(layer, (32, shortest, 128), training)
        assert at_shortest == (
            "band_slots" if kernel == "additive_slots" else "band"
        )
        before = path_of(layer, (32, shortest - 1, 128), training)
        assert before not in attention_plan.BAND_PATHS
        unknown = path_of(layer, (None, None, 128), training)
        expected = "band" if kernel == "multiplicative" else "band_slots"
        if kernel == "additive" and training is True:
            expected = "band_or_slots"
        assert unknown == expected
        longest = path_of(layer, (8, 65536, 64), training)
        assert longest == (
            "band" if kernel == "multiplicative" else "band_slots"
        )
    if stack:
        # The whole band up to its budget: `w * (T + w) * units` a
        # sequence.
        layer = add(attention_width=15)
        budgets = attention_plan.BAND_STACK_ELEMENTS[backend]
        for training, budget in (
            (True, budgets["training"]),
            (None, budgets["training"]),
            (False, budgets["inference"]),
        ):
            fitting = budget // (15 * 32) - 15
            assert path_of(layer, (1, fitting, 8), training) == "band"
            beyond = path_of(layer, (1, fitting + 1, 8), training)
            assert beyond == "band_slots"
            # A batch too large for the whole band: the slots from their
            # own crossover, not before.
            slots = attention_plan.band_min_length("additive_slots", 15)
            huge = path_of(layer, (10**6, slots, 8), training)
            assert huge == "band_slots"
            huge = path_of(layer, (10**6, slots - 1, 8), training)
            assert huge not in attention_plan.BAND_PATHS
    assert path_of(add(attention_width=1000), (8, 2048, 4)) == "blocked"
    # A width as big as 0.51's stand-in for "no width" is never unrolled.
    huge = add(attention_width=10**9, history_only=True)
    assert path_of(huge, (None, None, 4)) == "dense_or_blocked"
    assert path_of(huge, (2, 10, 4)) == "dense"


def test_path_choice_on_an_accelerator(monkeypatch):
    monkeypatch.setattr(attention_plan, "on_accelerator", lambda: True)
    add = SeqSelfAttention
    mul = dict(attention_type="multiplicative")
    # On every backend: the dense kernel up to the 3 GB budget, then a loop
    # of large blocks (64 query rows at batch 8 and T = 2048, 16 for a batch
    # size not known when traced).
    assert path_of(add(), (32, 500, 128)) == "dense"
    assert path_of(add(), (8, 2048, 64)) == "blocked"
    # The tanh it was measured with, on PyTorch too.
    assert attention_plan.hidden_activation() == "tanh"
    assert additive_scores.rows_per_block(32, 2048, batch_size=8) == 64
    assert additive_scores.rows_per_block(32, 2048) == 16
    # The band only from 100 windows (additive) or 32 key blocks on.
    assert path_of(add(attention_width=15), (1, 1499, 64)) == "dense"
    # (batch 8 there is beyond the dense budget: the loop of large blocks)
    assert path_of(add(attention_width=15), (8, 1499, 64)) == "blocked"
    # (one slot at a time: the band's blocks were not measured there)
    assert path_of(add(attention_width=15), (8, 1500, 64)) == "band_slots"
    assert path_of(add(attention_width=15, **mul), (8, 2495, 64)) == "dense"
    assert path_of(add(attention_width=15, **mul), (8, 2496, 64)) == "band"
    # The fused op from T = 512.
    assert path_of(add(**mul), (32, 511, 128)) == "dense"
    assert path_of(add(**mul), (32, 512, 128)) == "fused"
    monkeypatch.setattr(attention_plan, "on_accelerator", lambda: False)
    backend = keras.backend.backend()
    cpu_blocks = attention_plan.BLOCK_ELEMENTS[backend]
    assert attention_plan.block_elements() == cpu_blocks


def test_blocked_steps_keep_a_non_finite_row_to_itself(monkeypatch):
    # Each step waits for the one before through a zero it adds: a NaN in
    # one query row must still reach no other row.
    monkeypatch.setattr(attention_plan, "block_elements", lambda: 1)
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((2, 6, 4)).astype("float32")
    queries[0, 2, 1] = np.nan
    keys = rng.standard_normal((2, 5, 4)).astype("float32")
    kernel = rng.standard_normal(4).astype("float32")
    blocked = keras.ops.convert_to_numpy(
        additive_scores.blocked_additive_scores(queries, keys, kernel)
    )
    dense = keras.ops.convert_to_numpy(
        additive_scores.dense_additive_scores(queries, keys, kernel)
    )
    assert np.isnan(blocked[0, 2]).all()
    finite = np.ones(blocked.shape, bool)
    finite[0, 2] = False
    np.testing.assert_allclose(
        blocked[finite], dense[finite], rtol=1e-5, atol=1e-6
    )


def test_blocks_spread_the_rows_evenly(monkeypatch):
    monkeypatch.setattr(attention_plan, "block_elements", lambda: 2**22)
    # 40 rows of 100 keys fit a batch of 32 (also a batch size not known when
    # traced); three steps of 34 rows cover 100 queries.
    assert additive_scores.rows_per_block(32, 100) == 40
    assert additive_scores.rows_per_block(32, 100, 100) == 34
    assert additive_scores.rows_per_block(32, 100, 80) == 40
    assert additive_scores.rows_per_block(32, 100, 7) == 7
    assert additive_scores.rows_per_block(32, 100, None) == 40
    assert additive_scores.rows_per_block(32, 100, None, None) == 40
    # The budget is the whole batch's: four times the rows for a quarter of
    # the sequences, one step for all 100 queries at batch 8.
    assert additive_scores.rows_per_block(32, 100, None, 8) == 163
    assert additive_scores.rows_per_block(32, 100, 100, 8) == 100
    assert additive_scores.rows_per_block(32, 100, 100, 64) == 20
    assert additive_scores.rows_per_block(32, 100, 100, 2**20) == 1


@pytest.mark.parametrize(
    "devices,expected",
    [(["gpu:0", "gpu:1"], True), (["tpu:0"], True), (["cpu:0"], False)],
)
def test_on_accelerator_reads_keras_default_device(
    monkeypatch, devices, expected
):
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: devices)
    monkeypatch.setattr(attention_plan, "_ON_ACCELERATOR", [])
    assert attention_plan.on_accelerator() is expected


def no_device_list():
    # What PyTorch's backend raises: it lists no devices.
    raise AttributeError("'NoneType' object has no attribute 'list_devices'")


def test_on_accelerator_without_a_device_list(monkeypatch):
    # Where a new tensor goes decides. (The suite runs on CPUs.)
    monkeypatch.setattr(keras.distribution, "list_devices", no_device_list)
    monkeypatch.setattr(attention_plan, "_ON_ACCELERATOR", [])
    assert attention_plan.on_accelerator() is False


def test_on_accelerator_is_not_decided_while_tracing(monkeypatch):
    # Keras traces PyTorch models on the "meta" device, where nothing is
    # computed: the first answer must come from a real call's device, not
    # from building the model (it once took "meta" for a GPU for good).
    placed = {"device": "meta"}

    def convert_to_tensor(value, *args, **kwargs):
        return type("Placed", (), {"device": placed["device"]})()

    monkeypatch.setattr(keras.distribution, "list_devices", no_device_list)
    monkeypatch.setattr(attention_plan, "_ON_ACCELERATOR", [])
    monkeypatch.setattr(
        attention_plan.ops, "convert_to_tensor", convert_to_tensor
    )
    assert attention_plan.on_accelerator() is False
    assert attention_plan._ON_ACCELERATOR == []
    placed["device"] = "cuda:0"
    assert attention_plan.on_accelerator() is True
    placed["device"] = "meta"
    assert attention_plan.on_accelerator() is True


def test_training_leaves_the_device_to_real_calls(monkeypatch):
    # PyTorch's trainer first runs the model on "meta" tensors; the blocked
    # loop reads the device for its block size there.
    monkeypatch.setattr(attention_plan, "_ON_ACCELERATOR", [])
    layer = forced(build(np.random.default_rng(0)), "blocked")
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, layer(inputs))
    model.compile("sgd", "mse")
    batch = np.zeros((2, 7, 4), "float32")
    model.train_on_batch(batch, batch)
    device = getattr(ops.convert_to_tensor(0.0), "device", "cpu")
    expected = "cpu" not in str(device).lower()
    assert attention_plan.on_accelerator() is expected


def test_choose_path_covers_every_path(monkeypatch):
    # With the additive band's whole hidden tensor (not measured on a GPU).
    crossover = attention_plan.BAND_CROSSOVER
    backend = keras.backend.backend()
    monkeypatch.setitem(crossover, backend, crossover["tensorflow"])
    stack = attention_plan.BAND_STACK_ELEMENTS
    monkeypatch.setitem(stack, backend, stack["tensorflow"])
    chosen = {
        attention_plan.choose_path(
            kind, width, weights, batch, length, 32, training=training
        )
        for kind in ("additive", "multiplicative")
        for width in (None, 3)
        for weights in (False, True)
        for batch in (None, 1, 1000)
        for length in (None, 2, 1000)
        for training in (False, True)
    }
    assert chosen == set(attention_plan.PATHS)
    for training, expected in ((True, "blocked"), (None, "per_unit")):
        symbolic = attention_plan.choose_path(
            "additive", None, False, None, None, 32, True, training
        )
        assert symbolic == expected


@pytest.mark.parametrize("written", [False, True])
def test_masked_softmax_either_form_is_the_softmax(rng, monkeypatch, written):
    monkeypatch.setattr(attention_plan, "written_softmax", lambda _: written)
    logits = rng.standard_normal((2, 4, 6)).astype("float32") * 30
    allowed = rng.random((2, 4, 6)) < 0.6
    allowed[0, 1] = False  # a query with no key
    allowed[1, 2] = True
    logits[~allowed] = np.nan  # never read
    logits[1, 3, :] = [np.nan, np.inf, -np.inf, 3e38, 0.0, 1.0]
    allowed[1, 3] = [False, False, False, False, True, True]
    weights = ops.convert_to_numpy(
        attention_ops.masked_softmax(logits, allowed)
    )
    expected = np.zeros_like(logits)
    for b, t in itertools.product(range(2), range(4)):
        keep = allowed[b, t]
        if keep.any():
            row = logits[b, t, keep].astype("float64")
            row = np.exp(row - row.max())
            expected[b, t, keep] = row / row.sum()
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-7)
    # Without a mask too.
    logits = rng.standard_normal((2, 4, 6)).astype("float32") * 30
    plain = ops.convert_to_numpy(attention_ops.masked_softmax(logits))
    row = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(plain, row / row.sum(-1, keepdims=True), 1e-5)


@pytest.mark.parametrize("width", [None, 3])
def test_layer_gradients_agree_for_either_softmax(rng, monkeypatch, width):
    layer = build(rng, attention_width=width)
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    mask[0] = False  # a sequence with no step at all
    cotangent = rng.standard_normal(x.shape).astype("float32")
    results = []
    for written in (False, True):
        monkeypatch.setattr(
            attention_plan, "written_softmax", lambda _, w=written: w
        )
        results.append(layer_gradients(layer, x, mask, cotangent, True))
    (output, grads), (written_output, written_grads) = results
    np.testing.assert_allclose(written_output, output, rtol=1e-5, atol=1e-6)
    for grad, written_grad in zip(grads, written_grads, strict=True):
        assert np.isfinite(written_grad).all()
        np.testing.assert_allclose(written_grad, grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 7])
@pytest.mark.parametrize("width", [1, 2, 3, 8])
@pytest.mark.parametrize("history_only", [False, True])
def test_window_stack_is_the_window_slots_stacked(
    rng, length, width, history_only
):
    keys = rng.standard_normal((2, length, 3)).astype("float32")
    slots = attention_ops.window_slots(keys, width, history_only)
    stacked = attention_ops.window_stack(keys, width, history_only)
    assert tuple(stacked.shape) == (2, width, length + width, 3)
    stacked = stacked[:, :, :length]
    np.testing.assert_array_equal(
        ops.convert_to_numpy(stacked),
        ops.convert_to_numpy(ops.stack(slots, axis=1)),
    )
    # Slot `j` of query `t` is key `window_start(t) + j`, zero outside.
    starts = ops.convert_to_numpy(
        attention_ops.window_start(
            attention_ops.positions(length), width, history_only
        )
    )
    for t, j in itertools.product(range(length), range(width)):
        key = starts[t] + j
        expected = keys[:, key] if 0 <= key < length else 0.0
        np.testing.assert_array_equal(
            ops.convert_to_numpy(stacked)[:, j, t], expected + 0 * keys[:, 0]
        )


@pytest.mark.parametrize(
    "width,history_only", [(1, False), (3, True), (4, False), (6, True)]
)
def test_band_regularization_equals_dense(rng, width, history_only):
    band = rng.random((2, 7, width)).astype("float32")
    allowed = ops.convert_to_numpy(
        attention_ops.band_allowed_keys(7, width, history_only)
    )
    band = band * allowed
    dense = attention_ops.band_to_dense(
        ops.convert_to_tensor(band), width, history_only
    )
    expected = ops.convert_to_numpy(
        attention_ops.attention_regularization(dense)
    )
    actual = ops.convert_to_numpy(
        attention_ops.band_attention_regularization(
            ops.convert_to_tensor(band), width, history_only
        )
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    # And the dense weights put each slot where the window rule says.
    dense = ops.convert_to_numpy(dense)
    for t in range(7):
        for s in range(7):
            inside = numpy_reference.is_allowed(t, s, width, history_only)
            if not inside:
                assert dense[:, t, s].tolist() == [0, 0]


def test_fused_path_trains_without_missing_gradients(rng):
    # `ba` cancels in the softmax, but it must stay in the graph: Keras warns
    # (an error under this suite's settings) about weights with no gradient.
    layer = SeqSelfAttention(attention_type="multiplicative")
    layer._attention_path = lambda inputs, training=None: "fused"
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            layer,
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = rng.standard_normal((8, LENGTH, 4)).astype("float32")
    y = (x.sum(-1) > 0).astype("int32") + (x[..., 0] > 1)
    assert_fit_improves(model, x, y)


@pytest.mark.parametrize("attention_width", [None, 3])
def test_fit_with_unknown_sizes_in_the_traced_graph(rng, attention_width):
    # Variable lengths: TensorFlow retraces with `T = None`, so the global
    # additive call takes `dense_or_blocked`, and the band with any `T`.
    layer = SeqSelfAttention(units=4, attention_width=attention_width)
    model = keras.Sequential(
        [keras.Input((None, 4)), layer, keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    for length in (5, 7, 11, 13):
        x = rng.standard_normal((4, length, 4)).astype("float32")
        loss = model.train_on_batch(x, x[..., :1])
        assert np.isfinite(loss)
    expected = "dense_or_blocked"
    if attention_width is not None:
        expected = "band_or_slots"
        if not attention_plan.band_stack_measured():
            expected = "band_slots"
    assert path_of(layer, (None, None, 4)) == expected


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("width", [None, 3])
def test_training_flag_changes_no_result(rng, training, width):
    # `training=False` may take another kernel (a larger budget, JAX's fused
    # sum); the numbers stay the numpy reference's.
    layer = build(rng, attention_width=width)
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    outputs, _, _ = reference(layer, x, mask)
    actual = layer(x, mask=ops.convert_to_tensor(mask), training=training)
    np.testing.assert_allclose(
        ops.convert_to_numpy(actual), outputs, rtol=1e-5, atol=1e-5
    )


def test_dense_kernel_reductions_agree(rng):
    queries, keys = (
        ops.convert_to_tensor(rng.standard_normal((2, n, 5)), "float32")
        for n in (4, 6)
    )
    kernel = ops.convert_to_tensor(rng.standard_normal(5), "float32")
    by_product = additive_scores.dense_additive_scores(
        queries, keys, kernel, "matmul"
    )
    by_sum = additive_scores.dense_additive_scores(queries, keys, kernel, "sum")
    expected = np.tanh(
        ops.convert_to_numpy(queries)[:, :, None]
        + ops.convert_to_numpy(keys)[:, None]
    ) @ ops.convert_to_numpy(kernel)
    for scores in (by_product, by_sum):
        assert scores.shape == (2, 4, 6)
        np.testing.assert_allclose(
            ops.convert_to_numpy(scores), expected, rtol=1e-5, atol=1e-6
        )


def test_softmax_written_out_only_for_small_known_sizes():
    budget = attention_plan.measured(
        attention_plan.WRITTEN_SOFTMAX_ELEMENTS, None
    )
    assert (budget is not None) == (keras.backend.backend() == "tensorflow")
    assert not attention_plan.written_softmax((None, 3, 4))
    if budget is None:
        assert not attention_plan.written_softmax((2, 3, 4))
    else:
        assert attention_plan.written_softmax((1, 2, budget // 2))
        assert not attention_plan.written_softmax((1, 2, budget // 2 + 1))
