"""Model shapes, parameter counts, losses and class weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emotion_estimator.training.data import class_weights  # noqa: E402
from emotion_estimator.training.losses import make_loss  # noqa: E402
from emotion_estimator.training.model import (  # noqa: E402
    ModelDimensions,
    Probabilities,
    build_model,
    count_parameters,
)


@pytest.mark.parametrize("kind", ["lstm", "dense"])
@pytest.mark.parametrize("k", [27, 52])
def test_output_shape(kind: str, k: int) -> None:
    model = build_model(ModelDimensions(n_inputs=k, n_classes=3, kind=kind, hidden=8, layers=2))
    assert model(torch.randn(5, k)).shape == (5, 3)
    assert model(torch.randn(1, k)).shape == (1, 3)


def test_lstm_parameter_count_matches_stacked_lstm_formula() -> None:
    h, k, c = 16, 27, 3
    model = build_model(ModelDimensions(n_inputs=k, n_classes=c, hidden=h, layers=3))
    # layer 1 sees 1 scalar per step, the others see h; 4 gates, two bias vectors each
    lstm = 4 * h * (1 + h + 2) + 2 * 4 * h * (h + h + 2)
    assert count_parameters(model) == lstm + h * c + c


def test_lstm_reads_the_sequence_order() -> None:
    torch.manual_seed(0)
    model = build_model(ModelDimensions(n_inputs=10, hidden=8, layers=1, dropout=0)).eval()
    x = torch.randn(4, 10)
    assert not torch.allclose(model(x), model(x.flip(1)))


def test_unknown_kind_and_activation_rejected() -> None:
    with pytest.raises(ValueError):
        build_model(ModelDimensions(n_inputs=3, kind="gru"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_model(ModelDimensions(n_inputs=3, kind="dense", activation="nope"))


def test_probabilities_sum_to_one_and_temperature_flattens() -> None:
    torch.manual_seed(0)
    model = build_model(ModelDimensions(n_inputs=6, hidden=8, layers=1)).eval()
    x = torch.randn(32, 6) * 3
    sharp, flat = Probabilities(model, 0.5)(x), Probabilities(model, 4.0)(x)
    torch.testing.assert_close(sharp.sum(1), torch.ones(32))

    def entropy(p):
        return -(p * p.log()).sum(1)

    assert bool((entropy(flat) > entropy(sharp)).all())


def test_cce_matches_manual_weighted_mean() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, -2.0, 3.0]])
    y = torch.tensor([0, 1, 2])
    w = torch.tensor([1.0, 2.0, 0.5])
    nll = -torch.log_softmax(logits, 1)[torch.arange(3), y]
    torch.testing.assert_close(make_loss("cce")(logits, y), nll.mean())
    torch.testing.assert_close(make_loss("cce", w)(logits, y), (nll * w[y]).sum() / w[y].sum())


def test_focal_with_gamma_zero_is_cce_and_down_weights_easy_samples() -> None:
    logits = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 2
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(2))
    cce = make_loss("cce")(logits, y)
    torch.testing.assert_close(make_loss("focal", gamma=0.0)(logits, y), cce)
    assert make_loss("focal", gamma=2.0)(logits, y) < cce


def test_mse_is_squared_distance_of_probabilities() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    # p = 1/3 each, target (1, 0, 0): ((2/3)^2 + 2 (1/3)^2) / 3
    expected = ((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 3
    assert make_loss("mse")(logits, torch.tensor([0])).item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        make_loss("hinge")


def test_balanced_class_weights_equalise_class_totals() -> None:
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    w = class_weights(y, 3)
    totals = np.bincount(y, weights=w[y])
    np.testing.assert_allclose(totals, totals[0])
    assert w[2] > w[1] > w[0]
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0
