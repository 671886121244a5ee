"""Orthonormal 2D discrete wavelet transform (Daubechies family, periodic boundary) as a Linop.

``W = DWT ∘ Shift``: the image is first circularly shifted by ``shift`` (cycle spinning, as BART
does with a random shift per iteration), then transformed level by level. Each level filters the
current low-pass band with the separable analysis filters ``h`` (low) and ``g[l] = (-1)^l h[L-1-l]``
(high) with *periodic* extension and down-samples by two, so the transform is exactly orthonormal
(``W^H W = W W^H = I``) for every image size:

* coefficients are packed in place (Mallat layout), so ``W`` maps ``[..., H, W]`` to ``[..., H, W]``:
  the coarsest approximation sits in the top-left corner, the detail bands around it;
* a band of odd length is split into its first ``n - 1`` samples, which are transformed, and its last
  sample, which passes through unchanged (an orthonormal splitting); with random shifts the
  pass-through row/column moves from one iteration to the next;
* ``levels=None`` picks BART's rule: keep decomposing while both sides of the current band are
  at least 16 samples (a 320×320 image gets 5 levels, a coarsest band of 10×10).

The filters are the orthonormal Daubechies low-pass filters ``db1`` (Haar) to ``db8`` (``dbN`` has
``N`` vanishing moments and ``2N`` taps; BART's ``dau2`` is ``db2``), as tabulated by PyWavelets
(tests check them against ``pywt``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mrirecon.errors import ConfigError
from mrirecon.operators.catalog import example
from mrirecon.operators.linop import Linop

# Orthonormal Daubechies decomposition low-pass filters (PyWavelets ``Wavelet(name).dec_lo``).
_DAUBECHIES: dict[str, tuple[float, ...]] = {
    "db1": (0.7071067811865476, 0.7071067811865476),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db3": (0.03522629188570953, -0.08544127388202666, -0.13501102001025458, 0.45987750211849154,
            0.8068915093110925, 0.33267055295008263),
    "db4": (-0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
            -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965),
    "db5": (0.0033357252854737712, -0.012580751999081999, -0.006241490212798274, 0.07757149384004572,
            -0.032244869584638375, -0.24229488706638203, 0.13842814590132074, 0.7243085284377729,
            0.6038292697971896, 0.16010239797419293),
    "db6": (-0.0010773010853084796, 0.004777257510945511, 0.0005538422011614961, -0.03158203931748603,
            0.027522865530305727, 0.09750160558732304, -0.12976686756726194, -0.22626469396543983,
            0.31525035170919763, 0.7511339080210954, 0.49462389039845306, 0.11154074335010947),
    "db7": (0.00035371379997452024, -0.0018016407040474908, 0.0004295779729213665, 0.01255099855609984,
            -0.01657454163066688, -0.03802993693501441, 0.08061260915108308, 0.07130921926683026,
            -0.22403618499387498, -0.14390600392856498, 0.4697822874051931, 0.7291320908462351,
            0.3965393194819173, 0.07785205408500918),
    "db8": (-0.00011747678412476953, 0.0006754494064505693, -0.00039174037337694705, -0.004870352993451574,
            0.008746094047405777, 0.013981027917398282, -0.044088253930794755, -0.017369301001807547,
            0.12874742662047847, 0.0004724845739132828, -0.2840155429615469, -0.015829105256349306,
            0.5853546836542067, 0.6756307362972898, 0.31287159091429995, 0.05441584224310401),
}
_ALIASES = {"haar": "db1", "dau2": "db2"}

WAVELETS = tuple(sorted(_DAUBECHIES)) + tuple(sorted(_ALIASES))


def wavelet_filters(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The analysis filters ``(h, g)`` (float64) of the orthonormal Daubechies wavelet ``name``.

    Raises:
        ConfigError: unknown wavelet name (the message lists the known ones).
    """
    key = _ALIASES.get(name, name)
    if key not in _DAUBECHIES:
        raise ConfigError(f"wavelet: unknown wavelet {name!r}; known: {', '.join(WAVELETS)}")
    # Our analysis is a correlation ``low[j] = Σ_l h[l] x[2j + l]``; pywt's dec_lo is a convolution
    # filter, so reverse it.
    h = torch.tensor(_DAUBECHIES[key][::-1], dtype=torch.float64)
    n = h.numel()
    g = torch.tensor([(-1) ** k * float(h[n - 1 - k]) for k in range(n)], dtype=torch.float64)
    return h, g


def auto_levels(shape: Sequence[int], minsize: int = 16) -> int:
    """BART's number of levels: decompose while both sides of the current band are ``>= minsize``."""
    h, w = (int(s) for s in shape[-2:])
    levels = 0
    while h >= minsize and w >= minsize:
        h, w = h // 2, w // 2
        levels += 1
    return levels


class Wavelet(Linop):
    """Orthonormal periodic 2D Daubechies wavelet transform over the last two dimensions.

    ``W x = DWT(roll(x, shift))``; ``W^H = W^{-1}``.

    Args:
        shape: image shape ``(H, W)``.
        wavelet: ``"db1"`` … ``"db8"`` (aliases ``"haar"``, ``"dau2"`` = ``"db2"``, BART's default).
        levels: number of decomposition levels; ``None`` for BART's rule (see module docstring).
        shift: circular shift ``(dy, dx)`` applied before the transform (cycle spinning).

    Raises:
        ConfigError: unknown wavelet, negative levels, or more levels than the image allows.
    """

    def __init__(self, shape: Sequence[int], wavelet: str = "db2", levels: int | None = None,
                 shift: Sequence[int] = (0, 0)) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2:
            raise ConfigError(f"Wavelet: shape must be (H, W), got {shape}")
        h, g = wavelet_filters(wavelet)
        if levels is None:
            levels = auto_levels(shape)
        if levels < 0:
            raise ConfigError(f"Wavelet: levels must be >= 0, got {levels}")
        hh, ww = shape
        for lev in range(levels):
            if hh < 2 or ww < 2:
                raise ConfigError(f"Wavelet: {levels} levels do not fit an image of shape {shape} "
                                  f"(level {lev} would transform a {hh}x{ww} band)")
            hh, ww = hh // 2, ww // 2
        super().__init__(shape, shape)
        self._record(shape=shape, wavelet=wavelet, levels=levels, shift=tuple(int(s) for s in shift))
        self.wavelet = wavelet
        self.levels = int(levels)
        self.shift = tuple(int(s) for s in shift)
        self._h, self._g = h, g
        self._kernels: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def _kernel(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The four separable 2D analysis filters ``[4, 1, L, L]`` (LL, LH, HL, HH)."""
        key = (dtype, device)
        if key not in self._kernels:
            h, g = self._h, self._g
            k = torch.stack([torch.outer(h, h), torch.outer(h, g), torch.outer(g, h), torch.outer(g, g)])
            self._kernels[key] = k.unsqueeze(1).to(dtype=dtype, device=device)
        return self._kernels[key]

    # Real arithmetic on stacked real/imaginary parts: [B, 1, h, w] with B = batch * 2.
    def _forward_real(self, x: torch.Tensor, levels: int) -> torch.Tensor:
        if levels == 0:
            return x
        h, w = x.shape[-2:]
        he, we = h - h % 2, w - w % 2
        core = x[..., :he, :we]
        k = self._kernel(x.dtype, x.device)
        taps = k.shape[-1]
        pad = taps - 2
        if pad > 0:  # periodic extension of the even core (may wrap several times for tiny bands)
            core = _wrap_pad(core, pad)
        bands = F.conv2d(core, k, stride=2)  # [B, 4, he/2, we/2]
        ll = self._forward_real(bands[:, 0:1], levels - 1)
        top = torch.cat([ll, bands[:, 1:2]], dim=-1)
        bottom = torch.cat([bands[:, 2:3], bands[:, 3:4]], dim=-1)
        out = torch.cat([top, bottom], dim=-2)
        if we < w:
            out = torch.cat([out, x[..., :he, we:]], dim=-1)
        if he < h:
            out = torch.cat([out, x[..., he:, :]], dim=-2)
        return out

    def _inverse_real(self, c: torch.Tensor, levels: int) -> torch.Tensor:
        if levels == 0:
            return c
        h, w = c.shape[-2:]
        he, we = h - h % 2, w - w % 2
        h2, w2 = he // 2, we // 2
        ll = self._inverse_real(c[..., :h2, :w2], levels - 1)
        bands = torch.cat([ll, c[..., :h2, w2:we], c[..., h2:he, :w2], c[..., h2:he, w2:we]], dim=1)
        k = self._kernel(c.dtype, c.device)
        full = F.conv_transpose2d(bands, k, stride=2)  # [B, 1, he + L - 2, we + L - 2]
        core = _wrap_fold(full, he, we)
        if we < w:
            core = torch.cat([core, c[..., :he, we:]], dim=-1)
        if he < h:
            core = torch.cat([core, c[..., he:, :]], dim=-2)
        return core

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(-2, -1))
        return _on_real(x, lambda r: self._forward_real(r, self.levels))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        x = _on_real(y, lambda r: self._inverse_real(r, self.levels))
        if any(self.shift):
            x = torch.roll(x, shifts=tuple(-s for s in self.shift), dims=(-2, -1))
        return x

    def _normal(self) -> Linop:
        from mrirecon.operators.linop import Identity

        return Identity(self.ishape)

    def band_slices(self) -> list[tuple[int, tuple[slice, slice], str]]:
        """``(level, (rows, cols), kind)`` of every band in the packed layout (``kind`` in LL, LH, HL, HH, pass)."""
        out: list[tuple[int, tuple[slice, slice], str]] = []
        h, w = self.ishape
        for lev in range(1, self.levels + 1):
            he, we = h - h % 2, w - w % 2
            h2, w2 = he // 2, we // 2
            out += [(lev, (slice(0, h2), slice(w2, we)), "LH"), (lev, (slice(h2, he), slice(0, w2)), "HL"),
                    (lev, (slice(h2, he), slice(w2, we)), "HH")]
            if we < w:
                out.append((lev, (slice(0, he), slice(we, w)), "pass"))
            if he < h:
                out.append((lev, (slice(he, h), slice(0, w)), "pass"))
            h, w = h2, w2
        out.append((self.levels, (slice(0, h), slice(0, w)), "LL"))
        return out


def _wrap_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Periodic extension of the last two dims by ``pad`` samples at the end (any pad length)."""
    h, w = x.shape[-2:]
    reps_h, reps_w = 1 + -(-pad // h), 1 + -(-pad // w)
    if reps_h > 2 or reps_w > 2:
        x = x.repeat(*([1] * (x.ndim - 2)), reps_h, reps_w)
        return x[..., : h + pad, : w + pad]
    x = torch.cat([x, x[..., :pad, :]], dim=-2)
    return torch.cat([x, x[..., :, :pad]], dim=-1)


def _wrap_fold(full: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adjoint of :func:`_wrap_pad`: fold the overhang of a ``[.., h + p, w + p]`` array back periodically."""
    H, W = full.shape[-2:]
    if H > h:
        rows = full[..., :h, :]
        rest = full[..., h:, :]
        while rest.shape[-2] > 0:
            n = min(h, rest.shape[-2])
            rows = torch.cat([rows[..., :n, :] + rest[..., :n, :], rows[..., n:, :]], dim=-2)
            rest = rest[..., n:, :]
        full = rows
    if W > w:
        cols = full[..., :, :w]
        rest = full[..., :, w:]
        while rest.shape[-1] > 0:
            n = min(w, rest.shape[-1])
            cols = torch.cat([cols[..., :, :n] + rest[..., :, :n], cols[..., :, n:]], dim=-1)
            rest = rest[..., :, n:]
        full = cols
    return full


def _on_real(x: torch.Tensor, fn) -> torch.Tensor:  # noqa: ANN001
    """Apply a real ``[B, 1, h, w] -> [B, 1, h', w']`` function to a complex ``[..., h, w]`` tensor."""
    lead = x.shape[:-2]
    r = torch.stack([x.real, x.imag], dim=-3).reshape(-1, 1, *x.shape[-2:])
    out = fn(r)
    out = out.reshape(*lead, 2, *out.shape[-2:])
    return torch.complex(out[..., 0, :, :], out[..., 1, :, :])


@example("wavelet-db2-odd")
def _wavelet_odd(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((17, 11), "db2", levels=2, shift=(3, 1))


@example("wavelet-db4-even")
def _wavelet_even(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((16, 12), "db4", levels=2)


@example("wavelet-haar-3lev")
def _wavelet_haar(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((9, 8), "haar", levels=3)
