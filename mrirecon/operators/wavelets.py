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

from collections.abc import Callable, Sequence
from typing import Any

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

# One level's detail bands: (LH, HL, HH, column pass-through or None, row pass-through or None).
Bands = tuple[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]
# The same on stacked real/imaginary parts: (LH|HL|HH stacked on the channel axis, column pass, row pass).
RealLevel = tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]

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
        self._kernel_cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def replace(self, **changes: Any) -> Linop:
        """A new transform with some arguments replaced; one with the same wavelet shares the cached filters
        (cycle spinning builds a shifted transform every iteration)."""
        new = super().replace(**changes)
        if isinstance(new, Wavelet) and new.wavelet == self.wavelet:
            new._kernel_cache = self._kernel_cache
        return new

    def _kernels(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Polyphase analysis and synthesis weights ``[4, 4, P, P]`` (``P = L/2``), cached per dtype/device.

        The four 2D filters ``K_b = f_b ⊗ f'_b`` (LL, LH, HL, HH) are split by the parity of their taps:
        with ``X_ac = x[a::2, c::2]`` (``pixel_unshuffle``), band ``b`` is the correlation
        ``Σ_ac Σ_pq K_b[2p+a, 2q+c] X_ac[j+p, i+q]`` (periodic) — one stride-1 convolution with
        4 input and 4 output channels; the synthesis is its adjoint (flipped taps) and
        ``pixel_shuffle``.
        """
        key = (dtype, device)
        if key not in self._kernel_cache:
            h, g = self._h, self._g
            K = torch.stack([torch.outer(h, h), torch.outer(h, g), torch.outer(g, h), torch.outer(g, g)])  # [4, L, L]
            L = K.shape[-1]
            P = L // 2
            # analysis: Wf[b, a*2+c, p, q] = K_b[2p+a, 2q+c]
            Wf = K.reshape(4, P, 2, P, 2).permute(0, 2, 4, 1, 3).reshape(4, 4, P, P)
            # synthesis (adjoint): correlation with flipped taps, channels swapped
            Wi = Wf.flip(-2, -1).transpose(0, 1).contiguous()
            self._kernel_cache[key] = (Wf.to(dtype=dtype, device=device), Wi.to(dtype=dtype, device=device))
        return self._kernel_cache[key]

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Bands]]:
        """The bands of ``W x`` without packing: ``(approximation, details)``.

        ``details[level] = (LH, HL, HH, column_pass, row_pass)`` from the finest level to the coarsest;
        the pass-through column/row (odd sizes) are ``None`` where absent. Complex ``x [..., H, W]``
        (the shift is applied). :meth:`reconstruct` inverts it; thresholding can work on these directly.
        """
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(-2, -1))
        lead = x.shape[:-2]
        r, levels = self.decompose_real(_to_real(x))

        def to_c(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else _to_complex(t, lead)

        details = [(to_c(hi[:, 0:1]), to_c(hi[:, 1:2]), to_c(hi[:, 2:3]), to_c(colp), to_c(rowp))
                   for hi, colp, rowp in levels]
        return _to_complex(r, lead), details  # type: ignore[return-value]

    def decompose_real(self, r: torch.Tensor) -> tuple[torch.Tensor, list[RealLevel]]:
        """:meth:`decompose` on stacked real/imaginary parts ``[2B, 1, H, W]`` (no shift applied here).

        Returns ``(approximation [2B, 1, h, w], [(details [2B, 3, h_l, w_l], column_pass, row_pass)])``
        with the three detail bands (LH, HL, HH) of a level stacked along the channel axis.
        """
        levels: list[RealLevel] = []
        for _ in range(self.levels):
            h, w = r.shape[-2:]
            he, we = h - h % 2, w - w % 2
            colp = r[..., :he, we:] if we < w else None
            rowp = r[..., he:, :] if he < h else None
            core = r[..., :he, :we] if (he, we) != (h, w) else r
            bands = self._analysis(core)
            levels.append((bands[:, 1:4], colp, rowp))
            r = bands[:, 0:1]
        return r, levels

    def reconstruct_real(self, r: torch.Tensor, levels: Sequence[RealLevel]) -> torch.Tensor:
        """:meth:`reconstruct` on stacked real/imaginary parts (no shift undone here)."""
        for hi, colp, rowp in reversed(levels):
            r = self._synthesis(torch.cat([r, hi], dim=1))
            if colp is not None:
                r = torch.cat([r, colp], dim=-1)
            if rowp is not None:
                r = torch.cat([r, rowp], dim=-2)
        return r

    def reconstruct(self, approx: torch.Tensor, details: Sequence[Bands]) -> torch.Tensor:
        """Inverse of :meth:`decompose` (``W^H`` applied to the unpacked bands, shift undone)."""
        lead = approx.shape[:-2]

        def to_r(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else _to_real(t)

        levels = [(torch.cat([_to_real(lh), _to_real(hl), _to_real(hh)], dim=1), to_r(colp), to_r(rowp))
                  for lh, hl, hh, colp, rowp in details]
        r = self.reconstruct_real(_to_real(approx), levels)
        x = _to_complex(r, lead)
        if any(self.shift):
            x = torch.roll(x, shifts=tuple(-s for s in self.shift), dims=(-2, -1))
        return x

    def _analysis(self, core: torch.Tensor) -> torch.Tensor:
        Wf, _ = self._kernels(core.dtype, core.device)
        P = Wf.shape[-1]
        X = F.pixel_unshuffle(core, 2)  # [B, 4, h/2, w/2]
        if P > 1:
            X = _wrap_pad(X, P - 1)
        return _small_conv2d(X, Wf)

    def _synthesis(self, bands: torch.Tensor) -> torch.Tensor:
        _, Wi = self._kernels(bands.dtype, bands.device)
        P = Wi.shape[-1]
        if P > 1:
            bands = _wrap_pad_front(bands, P - 1)
        return F.pixel_shuffle(_small_conv2d(bands, Wi), 2)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        approx, details = self.decompose(x)
        return self._pack(approx, details)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        approx, details = self._unpack(y)
        return self.reconstruct(approx, details)

    @staticmethod
    def _pack(approx: torch.Tensor, details: Sequence[Bands]) -> torch.Tensor:
        out = approx
        for lh, hl, hh, colp, rowp in reversed(details):
            out = torch.cat([torch.cat([out, lh], dim=-1), torch.cat([hl, hh], dim=-1)], dim=-2)
            if colp is not None:
                out = torch.cat([out, colp], dim=-1)
            if rowp is not None:
                out = torch.cat([out, rowp], dim=-2)
        return out

    def _unpack(self, c: torch.Tensor) -> tuple[torch.Tensor, list[Bands]]:
        details: list[Bands] = []
        h, w = self.ishape
        for _ in range(self.levels):
            he, we = h - h % 2, w - w % 2
            h2, w2 = he // 2, we // 2
            colp = c[..., :he, we:w] if we < w else None
            rowp = c[..., he:h, :w] if he < h else None
            details.append((c[..., :h2, w2:we], c[..., h2:he, :w2], c[..., h2:he, w2:we], colp, rowp))
            h, w = h2, w2
        return c[..., :h, :w], details

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


# ---------------------------------------------------------------------------------------------
# BART's wavelet frame (``bart pics -R W``)
# ---------------------------------------------------------------------------------------------
# BART's ``wavelet_thresh`` is not an orthonormal transform: each 1D level extends the signal
# half-sample symmetrically and keeps ``(n + L - 1) // 2`` coefficients per band (PyWavelets'
# ``mode="symmetric"``), so the bands overlap at the borders, and an axis stops being transformed
# as soon as its low band would fall below the minimum size (16, or the image size if smaller) —
# the other axis may go on alone. The synthesis is the matching left inverse (PyWavelets' ``idwt``).
# ``bart_wavelet_threshold`` reproduces ``W⁺ soft(W roll(x, s), t)`` rolled back, BART's prox.

_BART_MINSIZE = 16


def bart_band_size(n: int, flen: int) -> int:
    """Length of each band after one symmetric-extension level (BART's ``bandsize``, pywt's ``dwt``)."""
    return (n + flen - 1) // 2


def bart_axis_levels(n: int, flen: int = 4, minsize: int = _BART_MINSIZE) -> int:
    """BART's ``wavelet_num_levels`` for one axis of length ``n`` (it sets the shift range ``[0, 2^levels]``)."""
    minsize = min(n, minsize)
    levels = 1
    while True:
        n = bart_band_size(n, flen)
        levels += 1
        if n < minsize:
            return levels


class BartRandShift:
    """BART's random wavelet shifts: glibc ``rand_r`` from ``state`` (BART starts at 1), ``rand_lim``.

    ``draw(shape)`` returns one shift per axis in ``[0, 2^levels]`` (``levels`` from
    :func:`bart_axis_levels` of that axis), drawn in axis order as BART does (its dim 0 is our H).
    """

    RAND_MAX = 2**31 - 1

    def __init__(self, state: int = 1) -> None:
        self.state = int(state) & 0xFFFFFFFF

    def rand_r(self) -> int:
        """glibc's ``rand_r``: three steps of its LCG, 11 + 10 + 10 bits."""
        nxt = self.state
        result = 0
        for bits in (2048, 1024, 1024):
            nxt = (nxt * 1103515245 + 12345) & 0xFFFFFFFF
            result = (result << 10) ^ ((nxt >> 16) % bits)
        self.state = nxt
        return result

    def rand_lim(self, limit: int) -> int:
        """Uniform integer in ``[0, limit]`` (BART's rejection rule)."""
        divisor = self.RAND_MAX // (limit + 1)
        while True:
            r = self.rand_r() // divisor
            if r <= limit:
                return r

    def draw(self, shape: Sequence[int], flen: int = 4) -> tuple[int, ...]:
        return tuple(self.rand_lim(1 << bart_axis_levels(int(n), flen)) for n in shape)


def _bart_tables(n: int, flen: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tables of one symmetric level on an axis of length ``n``.

    analysis ``idx [nb, L]``: ``band[j] = Σ_m x[idx[j, m]] f[m]`` with ``idx = reflect(2j + 1 - m)``;
    synthesis ``jdx [n, L]`` and ``valid [n, L]``: ``x[i] = Σ_m band[jdx[i, m]] f̃[m]`` over the ``m``
    with ``i + L - 2 - m = 2 jdx`` inside the band.
    """
    nb = bart_band_size(n, flen)
    j = torch.arange(nb).unsqueeze(1)
    m = torch.arange(flen).unsqueeze(0)
    idx = 2 * j + 1 - m
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    i = torch.arange(n).unsqueeze(1)
    twice = i + flen - 2 - m
    valid = (twice % 2 == 0) & (twice >= 0) & (twice < 2 * nb)
    jdx = torch.where(valid, twice // 2, 0)
    return idx.to(device), jdx.to(device), valid.to(device)


def _bart_analysis(x: torch.Tensor, axis: int, dec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level along ``axis`` (negative): low and high bands (``dec [L, 2]``: low, high filters)."""
    x = x.movedim(axis, -1)
    idx, _, _ = _bart_tables(x.shape[-1], dec.shape[0], x.device)
    lohi = x[..., idx] @ dec.to(x.dtype)  # [..., nb, 2]
    return lohi[..., 0].movedim(-1, axis), lohi[..., 1].movedim(-1, axis)


def _bart_synthesis(lo: torch.Tensor, hi: torch.Tensor, n: int, axis: int, rec: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_bart_analysis` to length ``n`` (``rec [L, 2]``: reconstruction filters)."""
    lo, hi = lo.movedim(axis, -1), hi.movedim(axis, -1)
    _, jdx, valid = _bart_tables(n, rec.shape[0], lo.device)
    w = valid.to(rec.dtype)
    x = (lo[..., jdx] * (w * rec[:, 0]).to(lo.dtype)).sum(-1) + (hi[..., jdx] * (w * rec[:, 1]).to(lo.dtype)).sum(-1)
    return x.movedim(-1, axis)


def bart_wavelet_filters(wavelet: str = "db2") -> tuple[torch.Tensor, torch.Tensor]:
    """``(dec [L, 2], rec [L, 2])`` float64: PyWavelets' decomposition and reconstruction filter pairs."""
    import pywt

    key = _ALIASES.get(wavelet, wavelet)
    if key not in _DAUBECHIES:
        raise ConfigError(f"wavelet: unknown wavelet {wavelet!r}; known: {', '.join(WAVELETS)}")
    dec_lo, dec_hi, rec_lo, rec_hi = pywt.Wavelet(key).filter_bank
    dec = torch.tensor([dec_lo, dec_hi], dtype=torch.float64).T.contiguous()
    rec = torch.tensor([rec_lo, rec_hi], dtype=torch.float64).T.contiguous()
    return dec, rec


def _bart_thresh_level(x: torch.Tensor, axes: tuple[int, ...], t: float, minsize: tuple[int, int],
                       dec: torch.Tensor, rec: torch.Tensor, soft: Callable[[torch.Tensor, float], torch.Tensor]
                       ) -> torch.Tensor:
    bands = [x]
    sizes = []
    for ax in axes:  # BART: dims in increasing order (H, then W)
        sizes.append(bands[0].shape[ax])
        bands = [b for pair in (_bart_analysis(b, ax, dec) for b in bands) for b in pair]
    low = bands[0]
    deeper = tuple(ax for ax in axes if low.shape[ax] >= minsize[ax])
    bands = [_bart_thresh_level(low, deeper, t, minsize, dec, rec, soft) if deeper else soft(low, t)] + \
        [soft(b, t) for b in bands[1:]]
    for ax, n in zip(reversed(axes), reversed(sizes)):
        bands = [_bart_synthesis(bands[k], bands[k + 1], n, ax, rec) for k in range(0, len(bands), 2)]
    return bands[0]


def bart_wavelet_threshold(x: torch.Tensor, t: float, shift: Sequence[int] = (0, 0), wavelet: str = "db2",
                           soft: Callable[[torch.Tensor, float], torch.Tensor] | None = None) -> torch.Tensor:
    """BART's wavelet soft-thresholding (``wavelet_thresh``) of complex images ``[..., H, W]``.

    ``roll(W⁺ soft(W roll(x, shift), t), -shift)`` with BART's symmetric-extension frame ``W`` (see
    the section comment; ``db2`` is BART's ``dau2``). All coefficients are thresholded, the coarsest
    band included. ``soft`` defaults to complex soft-thresholding.

    Raises:
        ConfigError: an axis shorter than the filter (BART needs at least 3 samples for ``dau2``).
    """
    dec, rec = bart_wavelet_filters(wavelet)
    flen = dec.shape[0]
    h, w = x.shape[-2:]
    if min(h, w) < max(flen - 1, 3):
        raise ConfigError(f"bart_wavelet_threshold: image {h}x{w} is too small for {wavelet} "
                          f"(each side needs at least {max(flen - 1, 3)} samples)")
    if soft is None:
        def soft(z: torch.Tensor, tau: float) -> torch.Tensor:
            mag = z.abs()
            return z * (torch.clamp(mag - tau, min=0) / torch.clamp(mag, min=torch.finfo(mag.dtype).tiny))
    real = torch.float64 if x.dtype == torch.complex128 else torch.float32
    dec, rec = dec.to(device=x.device, dtype=real), rec.to(device=x.device, dtype=real)
    shift = tuple(int(s) for s in shift)
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(-2, -1))
    out = _bart_thresh_level(x, (-2, -1), t, (min(h, _BART_MINSIZE), min(w, _BART_MINSIZE)), dec, rec, soft)
    return torch.roll(out, shifts=tuple(-s for s in shift), dims=(-2, -1)) if any(shift) else out


def _small_conv2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``conv2d`` with 4 channels and 1–8 taps, bypassing oneDNN on the CPU.

    For these tiny channel counts oneDNN's per-call reorders dominate: torch's native kernel is
    1.6–3× faster on the bands of a 320×320 image (measured with 2 threads). The switch is restored
    at once, so callers' own convolutions (denoisers) keep oneDNN.
    """
    if x.device.type != "cpu" or not torch.backends.mkldnn.enabled:
        return F.conv2d(x, weight)
    torch.backends.mkldnn.enabled = False
    try:
        return F.conv2d(x, weight)
    finally:
        torch.backends.mkldnn.enabled = True


def _wrap_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Periodic extension of the last two dims by ``pad`` samples at the end (any pad length)."""
    h, w = x.shape[-2:]
    reps_h, reps_w = 1 + -(-pad // h), 1 + -(-pad // w)
    if reps_h > 2 or reps_w > 2:
        x = x.repeat(*([1] * (x.ndim - 2)), reps_h, reps_w)
        return x[..., : h + pad, : w + pad]
    x = torch.cat([x, x[..., :pad, :]], dim=-2)
    return torch.cat([x, x[..., :, :pad]], dim=-1)


def _wrap_pad_front(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Periodic extension of the last two dims by ``pad`` samples at the start."""
    h, w = x.shape[-2:]
    if pad > h or pad > w:
        reps_h, reps_w = 1 + -(-pad // h), 1 + -(-pad // w)
        x = x.repeat(*([1] * (x.ndim - 2)), reps_h, reps_w)
        return x[..., x.shape[-2] - h - pad:, x.shape[-1] - w - pad:]
    x = torch.cat([x[..., h - pad:, :], x], dim=-2)
    return torch.cat([x[..., :, w - pad:], x], dim=-1)


def _to_real(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.real, x.imag], dim=-3).reshape(-1, 1, *x.shape[-2:])


def _to_complex(r: torch.Tensor, lead: tuple[int, ...] | torch.Size) -> torch.Tensor:
    r = r.reshape(*lead, 2, *r.shape[-2:])
    return torch.complex(r[..., 0, :, :], r[..., 1, :, :])


@example("wavelet-db2-odd")
def _wavelet_odd(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((17, 11), "db2", levels=2, shift=(3, 1))


@example("wavelet-db4-even")
def _wavelet_even(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((16, 12), "db4", levels=2)


@example("wavelet-haar-3lev")
def _wavelet_haar(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Wavelet((9, 8), "haar", levels=3)
