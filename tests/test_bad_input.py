"""Bad input gets a clear error naming the operator, what was expected and what arrived."""
from __future__ import annotations

import re

import pytest
import torch

from mrirecon.errors import ConfigError, DTypeError, MriReconError, NonFiniteError, ShapeError
from mrirecon.operators import (FFT, Blur, CoilExpand, CoilMix, Downsample, Sample, Sense, finite_checks,
                                gaussian_matrix)
from mrirecon.operators.catalog import EXAMPLES
from mrirecon.operators.linop import Linop

C64 = torch.complex64


def _op(name: str) -> Linop:
    return EXAMPLES.get(name)(torch.Generator().manual_seed(0), torch.complex128)


def _fmt(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


@pytest.mark.parametrize("name", EXAMPLES.names())
@pytest.mark.parametrize("side", ["forward", "adjoint"])
def test_every_operator_rejects_bad_input(name: str, side: str) -> None:
    A = _op(name)
    op = A if side == "forward" else A.H
    shape = op.ishape
    who = re.escape(op.name)
    wrong = (*shape[:-1], shape[-1] + 1)
    with pytest.raises(ShapeError, match=rf"{who}: expected input of shape \[\.\.\., {_fmt(shape)}\], "
                                         rf"got \[{_fmt(wrong)}\] \(torch.complex128\)"):
        op(torch.zeros(wrong, dtype=torch.complex128))
    with pytest.raises(DTypeError, match=rf"{who}: expected a complex tensor as input .* got torch.float64 of "
                                         rf"shape \[{_fmt(shape)}\]"):
        op(torch.zeros(shape, dtype=torch.float64))
    x = torch.zeros(shape, dtype=torch.complex128)
    x.view(-1)[0] = complex(float("nan"), 0)
    with pytest.raises(NonFiniteError, match=rf"{who}: input of shape \[{_fmt(shape)}\] contains NaN or Inf"):
        op(x)
    with finite_checks(False):  # solvers switch the check off in their inner loops
        assert op(x).shape[-len(op.oshape):] == op.oshape


def test_sense_bad_maps_and_masks() -> None:
    maps = torch.ones(4, 8, 6, dtype=C64)
    with pytest.raises(DTypeError, match=r"Sense: maps must be complex .* got torch.float32 of shape \[4, 8, 6\]"):
        Sense(torch.ones(4, 8, 6))
    with pytest.raises(ShapeError, match=r"Sense: maps must have shape \[\.\.\., C, H, W\], got \[8, 6\]"):
        Sense(torch.ones(8, 6, dtype=C64))
    with pytest.raises(ShapeError, match=r"Sense: maps must have shape \[\.\.\., M, C, H, W\], got \[4, 8, 6\]"):
        Sense(maps, multi_set=True)
    with pytest.raises(NonFiniteError, match=r"Sense: maps of shape \[4, 8, 6\] contain NaN or Inf"):
        Sense(torch.full((4, 8, 6), float("nan"), dtype=C64))
    with pytest.raises(ShapeError, match=r"Sense: mask of shape \[5\] does not broadcast to \[\.\.\., 4, 8, 6\]"):
        Sense(maps, torch.ones(5))
    with pytest.raises(ShapeError, match=r"Sense: mask of shape \[8, 5\] does not broadcast"):
        Sense(maps, torch.ones(8, 5))
    with pytest.raises(DTypeError, match="Sense: mask must be real .* got torch.complex64"):
        Sense(maps, torch.ones(6, dtype=C64))
    with pytest.raises(NonFiniteError, match=r"Sense: mask of shape \[6\] contains NaN"):
        Sense(maps, torch.full((6,), float("nan")))
    E = Sense(maps, torch.ones(6))
    with pytest.raises(ShapeError, match=r"Sense: maps have 4 coils, k-space has 5 \(k-space shape \[5, 8, 6\]\)"):
        E.adjoint(torch.ones(5, 8, 6, dtype=C64))
    with pytest.raises(ShapeError, match=r"Sense: maps have 4 coils, k-space has 5 \(k-space shape \[5, 8, 6\]\)"):
        E.H(torch.ones(5, 8, 6, dtype=C64))
    with pytest.raises(ShapeError, match=r"Sense: expected input of shape \[\.\.\., 8, 6\], got \[6, 8\]"):
        E(torch.ones(6, 8, dtype=C64))
    with pytest.raises(NonFiniteError, match=r"Sense.N: input of shape \[8, 6\] contains NaN"):
        E.N(torch.full((8, 6), float("nan"), dtype=C64))
    with pytest.raises(DTypeError, match=r"Sense: expected a complex torch tensor as input \[\.\.\., 8, 6\], got ndarray"):
        E(torch.ones(8, 6).numpy())


def test_sample_coil_expand_fft_bad_input() -> None:
    with pytest.raises(ShapeError, match=r"Sample: mask of shape \[7\] does not broadcast to \[\.\.\., 4, 8, 6\]"):
        Sample(torch.ones(7), (4, 8, 6))
    with pytest.raises(DTypeError, match="Sample: mask must be a torch tensor, got list"):
        Sample([1, 0, 1], (4, 8, 3))
    with pytest.raises(ShapeError, match=r"Sample: expected input of shape \[\.\.\., 4, 8, 6\], got \[3, 8, 6\]"):
        Sample(torch.ones(6), (4, 8, 6))(torch.ones(3, 8, 6, dtype=C64))
    with pytest.raises(DTypeError, match=r"CoilExpand: maps must be complex .* got torch.float32 of shape \[4, 8, 6\]"):
        CoilExpand(torch.ones(4, 8, 6))
    with pytest.raises(ShapeError, match=r"CoilExpand: expected input of shape \[\.\.\., 8, 6\], got \[8, 5\]"):
        CoilExpand(torch.ones(4, 8, 6, dtype=C64))(torch.ones(8, 5, dtype=C64))
    with pytest.raises(DTypeError, match=r"FFT: expected a complex tensor as input .* got torch.float32 of shape \[8, 6\]"):
        FFT((8, 6))(torch.ones(8, 6))
    with pytest.raises(ConfigError, match=r"FFT: dim \(-3,\) must hold negative axes within shape \(8, 6\)"):
        FFT((8, 6), dim=(-3,))


def test_new_operators_bad_construction() -> None:
    with pytest.raises(ShapeError, match=r"CoilMix: matrix \[C_out, C_in\] = \[2, 3\] takes 3 coils but shape \[4, 5\]"):
        CoilMix(torch.ones(2, 3, dtype=C64), (4, 5))
    with pytest.raises(DTypeError, match=r"CoilMix: matrix must be complex .* got torch.float32 of shape \[2, 3\]"):
        CoilMix(torch.ones(2, 3), (3, 5))
    with pytest.raises(ShapeError, match=r"Blur: kernel \[9, 9\] is larger than the image \[8, 6\]"):
        Blur(torch.ones(9, 9), (8, 6))
    with pytest.raises(ShapeError, match=r"Downsample: shape must be \(\.\.\., H, W\) with positive sizes, got \(8,\)"):
        Downsample((8,), 2)
    with pytest.raises(ShapeError, match=r"DenseMatrix: expected input of shape \[\.\.\., 4, 3\], got \[3, 4\]"):
        gaussian_matrix(5, (4, 3))(torch.ones(3, 4, dtype=C64))
    # every error above is a library error (the CLI prints it as one line)
    with pytest.raises(MriReconError):
        Blur(torch.ones(9, 9), (8, 6))


def test_adjoint_through_H_names_the_coil_mismatch() -> None:
    E = Sense(torch.randn(4, 8, 6, dtype=torch.complex64))
    with pytest.raises(ShapeError, match=r"Sense: maps have 4 coils, k-space has 5"):
        E.H(torch.randn(5, 8, 6, dtype=torch.complex64))


def test_lazily_conjugated_input_is_accepted() -> None:
    x = torch.randn(4, 5, dtype=torch.complex64)
    assert torch.allclose(FFT((4, 5))(x.conj()), FFT((4, 5))(x.conj().resolve_conj()))
