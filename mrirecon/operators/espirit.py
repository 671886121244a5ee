"""Coil sensitivity maps: ESPIRiT calibration in torch (batched, CPU/CUDA), Walsh maps, a sigpy cross-check.

ESPIRiT (Uecker et al., MRM 71:990, 2014), with BART ``ecalib``'s parameters and defaults:

1. calibration region: the largest fully sampled centred block (grown one line at a time per axis,
   as BART's ``calib_geom``), at most ``24×24`` (``ecalib -r 24``), or a given size;
2. calibration matrix of all ``k×k`` patches (``-k 6``) of all coils; the kernels are the right
   singular vectors whose singular value ``σ_i`` satisfies ``σ_i / σ_0 > sqrt(thresh)``
   (``-t 0.001``: BART compares squared singular values);
3. per image point the ``C×C`` matrix ``G(r) = (1/k²) Σ_n w_n(r) w_n(r)^H`` (``w_n`` is the inverse
   DFT of kernel ``n``); its entries are trigonometric polynomials of degree ``k - 1``, so they are
   computed exactly on a ``2k×2k`` grid and interpolated exactly (zero-padded DFT), as BART does;
4. the maps are the eigenvectors of ``G(r)`` with eigenvalue ≈ 1; maps are set to zero where the
   eigenvalue is ``<= crop`` (``-c 0.8``); the phase is fixed relative to the first principal
   component of the calibration data (BART's default rotation).

Speed: BART decomposes ``G(r)`` at every pixel (30 orthogonal iterations per pixel). Here the
decomposition is done by batched ``torch.linalg.eigh`` on a coarse grid (``grid`` points per axis,
default 64 — ``G`` is exact there), the phase-aligned eigenvectors and the eigenvalues are
interpolated to full resolution with periodic cubic convolution, and the vectors are renormalised.
``grid=None`` (or a grid at least as large as the image) decomposes at every pixel instead.

Shapes: ``kspace`` is complex ``[..., C, H, W]`` (centred k-space, zero where not sampled); maps are
``[..., C, H, W]`` (``sets=1``) or ``[..., M, C, H, W]`` (``sets=M``).
"""
from __future__ import annotations

import math
import numbers

import torch

from mrirecon.errors import ConfigError, DataError, DTypeError, ShapeError
from mrirecon.operators.fft import ifft2c

CalibSize = int | tuple[int, int] | None

BART_CALIB = 24  # ``ecalib -r`` default
BART_KERNEL = 6  # ``ecalib -k`` default
MIN_KERNEL = 2  # the smallest kernel ``kernel="auto"`` picks: a 1-line centre cannot calibrate ESPIRiT
BART_ORTHITER = 30  # orthogonal iterations per pixel in BART's ``eigenmaps``
EIG_SOLVERS = ("exact", "bart")


# ---------------------------------------------------------------------------------------------
# calibration region
# ---------------------------------------------------------------------------------------------
def sampling_pattern(kspace: torch.Tensor) -> torch.Tensor:
    """Boolean ``[H, W]``: where k-space was sampled (nonzero in any coil), in every batch element."""
    nz = (kspace != 0).any(dim=-3)
    return nz.reshape(-1, *nz.shape[-2:]).all(dim=0)


def calib_region(pattern: torch.Tensor, limit: int | tuple[int, int] = BART_CALIB) -> tuple[int, int]:
    """Size ``(ch, cw)`` of the largest fully sampled centred block, at most ``limit``.

    Grows the block from ``1×1`` one line per axis in turn, keeping it centred at
    ``((H - ch) // 2, (W - cw) // 2)``, and stops growing an axis when the next line has a gap
    (BART's ``calib_geom``).

    Args:
        pattern: boolean ``[H, W]`` sampling pattern.
        limit: maximum size per axis.
    """
    H, W = pattern.shape[-2:]
    lim = (limit, limit) if isinstance(limit, int) else tuple(limit)
    dims, n = [1, 1], (H, W)
    stop = [False, False]
    pat = pattern.bool()
    while not all(stop):
        for i in range(2):
            if dims[i] >= n[i] or dims[i] >= lim[i]:
                stop[i] = True
            if stop[i]:
                continue
            dims[i] += 1
            r0, c0 = (H - dims[0]) // 2, (W - dims[1]) // 2
            if not bool(pat[r0:r0 + dims[0], c0:c0 + dims[1]].all()):
                dims[i] -= 1
                stop[i] = True
    return dims[0], dims[1]


def extract_calib(kspace: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centred ``size`` block ``[..., C, ch, cw]`` of ``kspace`` (BART's placement ``(n - c) // 2``)."""
    H, W = kspace.shape[-2:]
    ch, cw = size
    r0, c0 = (H - ch) // 2, (W - cw) // 2
    return kspace[..., r0:r0 + ch, c0:c0 + cw]


def auto_kernel(size: tuple[int, int], largest: int = BART_KERNEL) -> int:
    """The kernel width ``kernel="auto"`` uses for a ``size`` calibration region: BART's 6 where the narrower side
    has 10 lines or more, else ``side // 2 + 1`` (at least 2), so the kernel is at most about half the region.

    ESPIRiT needs the kernel to slide over the region: with ``w − k + 1`` patch positions across a ``w``-line
    region, a kernel as wide as the region (BART's 6 on a 6-line centre) sees one patch column, and the
    eigenvalue crop then discards most of the object. Measured on 4 demo validation slices (8 coils; mean agreement
    ``|<s, s_ref>|`` with the maps of a 24×24 region over the object, 0 where a map is cropped), a 24×w region:
    ``k = 6``: 0.022 (w = 6), 0.30 (7), 0.85 (8), 0.976 (9), 0.9995 (10); ``k = 5``: 0.062 (5), 0.98 (7),
    0.9993 (8); ``k = 4``: 0.24 (4), 0.95 (5), 0.9986 (6); ``k = 3``: 0.89 (3), 0.9967 (4); ``k = 2``: 0.9946 (3).
    Each ``k`` is good from ``w = 2k − 2`` on, which is this rule. BART's ``ecalib`` stops with an assertion
    when the region is narrower than its kernel.
    """
    side = min(size)
    return max(MIN_KERNEL, min(largest, side // 2 + 1))


def _resolve_calib(kspace: torch.Tensor, calib: CalibSize, kernel: int | str, who: str
                   ) -> tuple[tuple[int, int], int]:
    """The calibration region's size and the kernel width (``"auto"`` resolved by :func:`auto_kernel`)."""
    pattern = sampling_pattern(kspace)
    if calib is None:
        size = calib_region(pattern, BART_CALIB)
    else:
        size = (int(calib), int(calib)) if isinstance(calib, int) else (int(calib[0]), int(calib[1]))
        H, W = kspace.shape[-2:]
        if size[0] > H or size[1] > W or min(size) < 1:
            raise ConfigError(f"{who}: calib {size} does not fit k-space of size {H}x{W}")
        block = extract_calib(pattern, size)
        if not bool(block.all()):
            raise DataError(f"{who}: the centred {size[0]}x{size[1]} calibration block is not fully sampled "
                            f"({int((~block).sum())} of {block.numel()} k-space points missing); "
                            f"give a smaller calib or None to detect the region")
    if kernel == "auto":
        kernel = auto_kernel(size)
    if size[0] < kernel or size[1] < kernel:
        raise DataError(f"{who}: the fully sampled calibration region is {size[0]}x{size[1]}, smaller than "
                        f"the {kernel}x{kernel} kernel (k-space {tuple(kspace.shape)}); give a smaller kernel or "
                        f"data with a larger fully sampled centre")
    return size, kernel


def _check_kspace(kspace: torch.Tensor, who: str) -> None:
    if not isinstance(kspace, torch.Tensor) or not kspace.is_complex():
        got = kspace.dtype if isinstance(kspace, torch.Tensor) else type(kspace).__name__
        raise DTypeError(f"{who}: expected complex k-space [..., C, H, W], got {got}")
    if kspace.ndim < 3:
        raise ShapeError(f"{who}: expected k-space [..., C, H, W], got shape {list(kspace.shape)}")
    if not torch.isfinite(kspace).all():
        raise DataError(f"{who}: k-space of shape {list(kspace.shape)} contains NaN or Inf")


# ---------------------------------------------------------------------------------------------
# ESPIRiT
# ---------------------------------------------------------------------------------------------
def espirit_kernels(calib: torch.Tensor, kernel: int = 6, thresh: float = 0.001
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Signal-space kernels of the calibration matrix.

    Args:
        calib: complex ``[B, C, ch, cw]`` fully sampled calibration data.
        kernel: kernel width ``k``.
        thresh: keep singular vectors with ``σ_i / σ_0 > sqrt(thresh)`` (BART ``-t``).

    Returns:
        ``(kernels [B, n, C, k, k], keep [B, n] bool, sv [B, N])``: the right singular vectors
        (columns sorted by decreasing singular value, ``n`` = the maximum kept over the batch),
        which of them are kept per batch element, and all singular values.
    """
    B, C, ch, cw = calib.shape
    k = kernel
    patches = calib.unfold(-2, k, 1).unfold(-2, k, 1)  # [B, C, ch-k+1, cw-k+1, k, k]
    P = (ch - k + 1) * (cw - k + 1)
    A = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, P, C * k * k).to(torch.complex128)
    N = A.shape[-1]
    # Right singular vectors from the smaller Gram matrix (double precision: it is ill-conditioned).
    if P < N:
        evals, U = torch.linalg.eigh(A @ A.mH)  # [B, P], [B, P, P]
        evals, U = evals.flip(-1).clamp_min(0), U.flip(-1)
        sv = evals.sqrt()
        Vfull = A.mH @ U / sv.clamp_min(torch.finfo(sv.dtype).tiny).unsqueeze(-2)  # [B, N, P]
        sv = torch.cat([sv, sv.new_zeros(B, N - P)], dim=-1)
    else:
        evals, Vfull = torch.linalg.eigh(A.mH @ A)
        evals, Vfull = evals.flip(-1).clamp_min(0), Vfull.flip(-1)
        sv = evals.sqrt()
    if not bool((sv[:, 0] > 0).all()):
        raise DataError("espirit_maps: the calibration region holds no signal (all singular values are 0)")
    keep = sv / sv[:, :1] > math.sqrt(thresh)
    n = int(keep.sum(dim=-1).max())
    # The rows of the calibration matrix (patches a_p) lie in the span of conj(v_n), the conjugated
    # right singular vectors: those are the signal-space kernels.
    V = Vfull[..., :n].conj().to(calib.dtype)  # [B, N, n]
    kernels = V.permute(0, 2, 1).reshape(B, n, C, k, k)
    return kernels, keep[:, :n], sv.to(calib.real.dtype)


def _gram_coefficients(kernels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients ``Ĝ(f)`` of ``G(r)`` on a centred ``2k×2k`` frequency grid: ``[B, 2k, 2k, C, C]``.

    ``G(r) = (1/k²) Σ_n w_n(r) w_n(r)^H`` with ``w_n(r)_c = Σ_κ v_n(c, κ) e^{+2πi κ·r}``; its entries are
    trigonometric polynomials with frequencies ``κ - κ'`` in ``[-(k-1), k-1]²``.
    """
    B, n, C, k, _ = kernels.shape
    g = 2 * k
    v = kernels * keep[:, :, None, None, None].to(kernels.dtype)
    # samples of w_n on the 2k grid r = m / (2k): w(m) = Σ_κ v(κ) e^{+2πi κ m / 2k} = 2k·ifft(v)[m]
    pad = torch.zeros(B, n, C, g, g, dtype=kernels.dtype, device=kernels.device)
    pad[..., :k, :k] = v
    w = torch.fft.ifft2(pad, norm="forward")  # [B, n, C, g, g], unnormalised inverse DFT
    w = w.permute(0, 3, 4, 1, 2)  # [B, g, g, n, C]
    G = torch.einsum("bxync,bxynd->bxycd", w, w.conj()) / (k * k)  # [B, g, g, C, C]
    Ghat = torch.fft.fft2(G.permute(0, 3, 4, 1, 2), norm="forward")  # [B, C, C, g, g] coefficients
    Ghat = torch.fft.fftshift(Ghat, dim=(-2, -1))  # frequency -k .. k-1 (index 0 = -k, unused)
    return Ghat.permute(0, 3, 4, 1, 2)


def _evaluate_gram(Ghat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Evaluate ``G`` at image positions (centred pixel coordinates in units of the full grid) ``[B, R, Q, C, C]``.

    ``rows``/``cols`` are fractional frequencies' arguments ``i_c / H`` and ``j_c / W``.
    """
    g = Ghat.shape[1]
    f = torch.arange(g, device=Ghat.device, dtype=rows.dtype) - g // 2
    Er = torch.exp(2j * math.pi * rows[:, None] * f[None, :]).to(Ghat.dtype)  # [R, g]
    Ec = torch.exp(2j * math.pi * cols[:, None] * f[None, :]).to(Ghat.dtype)  # [Q, g]
    G = torch.einsum("rf,bfgcd->brgcd", Er, Ghat)
    return torch.einsum("qg,brgcd->brqcd", Ec, G)


def _cubic_matrix(n_out: int, n_in: int, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """Periodic cubic-convolution (Keys, a = -0.5) interpolation matrix ``[n_out, n_in]``.

    Coarse sample ``j`` sits at fine position ``j · n_out / n_in``.
    """
    u = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    base = torch.floor(u)
    t = u - base
    M = torch.zeros(n_out, n_in, dtype=torch.float64)
    a = -0.5
    for off in (-1, 0, 1, 2):
        d = (t - off).abs()
        w = torch.where(d <= 1, (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1,
                        torch.where(d < 2, a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a, torch.zeros_like(d)))
        idx = ((base + off).long() % n_in)
        M[torch.arange(n_out), idx] += w
    return M.to(device=device, dtype=dtype)


def _principal_coil_vector(calib: torch.Tensor) -> torch.Tensor:
    """First principal component (over k-space samples) of the calibration data: ``[B, C]``."""
    B, C = calib.shape[:2]
    X = calib.reshape(B, C, -1)
    cov = X @ X.mH
    _, vecs = torch.linalg.eigh(cov.to(torch.complex128))
    return vecs[..., -1].to(calib.dtype)


def _top_eigen(G: torch.Tensor, sets: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``sets`` eigenpairs of Hermitian ``G [B, *, C, C]``, phases fixed by ``ref [B, C]``.

    Returns ``(eigenvalues [B, *, M], eigenvectors [B, *, C, M])``, eigenvalues decreasing; each
    vector is multiplied by the conjugate phase of its projection on ``ref``.
    """
    evals, evecs = torch.linalg.eigh(G)
    return evals.flip(-1)[..., :sets], _phase_fix(evecs.flip(-1)[..., :sets], ref)


def _phase_fix(vecs: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Multiply each eigenvector ``[B, *, C, M]`` by the conjugate phase of its projection on ``ref [B, C]``."""
    extra = vecs.ndim - 3
    r = ref.reshape(ref.shape[0], *([1] * extra), ref.shape[1], 1)
    proj = (r.conj() * vecs).sum(dim=-2, keepdim=True)
    phase = torch.sgn(proj)
    phase = torch.where(proj == 0, torch.ones_like(phase), phase)
    return vecs * phase.conj()


def _orthiter_eigen(G: torch.Tensor, sets: int, ref: torch.Tensor, iters: int = BART_ORTHITER
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """BART's per-pixel solver: ``iters`` orthogonal iterations of ``G`` from the first ``sets`` unit vectors.

    The eigenvalue estimates are the Gram-Schmidt norms of the last step, as in BART's ``orthiter``.
    Where two eigenvalues of ``G`` are close, 30 steps do not separate them, and the vector is
    a mixture: this reproduces BART's maps there too. Same returns as :func:`_top_eigen`.
    """
    C = G.shape[-1]
    V = torch.eye(C, sets, dtype=G.dtype, device=G.device).expand(*G.shape[:-2], C, sets)
    vals = torch.zeros(*G.shape[:-2], sets, dtype=G.real.dtype, device=G.device)
    for _ in range(iters):
        V = G @ V
        if sets == 1:
            vals = torch.linalg.vector_norm(V, dim=-2)
            V = V / vals.unsqueeze(-2).clamp_min(torch.finfo(vals.dtype).tiny)
        else:
            V, R = torch.linalg.qr(V)
            vals = torch.diagonal(R, dim1=-2, dim2=-1).abs()
    order = torch.argsort(vals, dim=-1, descending=True)
    vals = torch.gather(vals, -1, order)
    V = torch.gather(V, -1, order.unsqueeze(-2).expand_as(V))
    return vals, _phase_fix(V, ref)


def _refine(maps: torch.Tensor, lam: torch.Tensor, flagged: torch.Tensor, Ghat: torch.Tensor, ref: torch.Tensor,
            sets: int, H: int, W: int, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact eigen-decomposition at the ``flagged [B, H, W]`` pixels (G evaluated there from its coefficients)."""
    g = Ghat.shape[1]
    C = Ghat.shape[-1]
    f = torch.arange(g, device=Ghat.device, dtype=torch.float64) - g // 2
    maps, lam = maps.clone(), lam.clone()
    for b in range(flagged.shape[0]):
        idx = torch.nonzero(flagged[b])
        coef = Ghat[b].reshape(g * g, C * C)
        for start in range(0, idx.shape[0], chunk):
            ij = idx[start:start + chunk]
            rows = (ij[:, 0].to(torch.float64) - H // 2) / H
            cols = (ij[:, 1].to(torch.float64) - W // 2) / W
            Er = torch.exp(2j * math.pi * rows[:, None] * f[None, :])
            Ec = torch.exp(2j * math.pi * cols[:, None] * f[None, :])
            Wq = (Er[:, :, None] * Ec[:, None, :]).reshape(-1, g * g)
            Gq = (Wq @ coef).reshape(-1, C, C).to(maps.dtype)
            ev, vec = _top_eigen(Gq[None], sets, ref[b:b + 1])  # [1, Q, M], [1, Q, C, M]
            maps[b, :, :, ij[:, 0], ij[:, 1]] = vec[0].permute(2, 1, 0)
            lam[b, :, ij[:, 0], ij[:, 1]] = ev[0].T.to(lam.dtype)
    return maps, lam


def espirit_maps(kspace: torch.Tensor, calib: CalibSize = None, kernel: int | str = BART_KERNEL, thresh: float = 0.001,
                 crop: float = 0.8, sets: int = 1, grid: int | None = 64, return_eigenvalues: bool = False,
                 eig: str = "exact") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT coil sensitivity maps (BART ``ecalib`` semantics; see the module docstring).

    Args:
        kspace: complex ``[..., C, H, W]`` centred k-space with a fully sampled centre (not modified).
        calib: ``None`` to detect the largest fully sampled centred block (at most 24×24, BART's
            ``-r 24``), or the block size (``int`` or ``(ch, cw)``), which must be fully sampled.
        kernel: kernel width ``k`` (BART ``-k``, default 6), or ``"auto"``: chosen from the calibration region's
            size by :func:`auto_kernel` (6 for regions of 10 lines and more, ``side // 2 + 1`` for narrower ones,
            where a 6×6 kernel gives poor maps or none).
        thresh: singular-value threshold (BART ``-t``, default 0.001: kernels with
            ``σ_i/σ_0 > sqrt(thresh)`` span the signal space; sigpy's ``thresh`` is ``sqrt`` of this).
        crop: zero the maps where the eigenvalue is ``<= crop`` (BART ``-c``, default 0.8).
        sets: number of map sets ``M`` (eigenvectors, by decreasing eigenvalue). BART's ``ecalib``
            computes 2 by default (``-m``); here the default is 1.
        grid: coarse grid size for the eigen-decomposition (per axis; interpolated to full size), or
            ``None`` to decompose at every pixel (exact, slower).
        return_eigenvalues: also return the eigenvalue maps ``[..., M, H, W]`` (BART's ``ev-maps``).
        eig: ``"exact"`` (``eigh``: the true eigenvectors) or ``"bart"``: BART's own per-pixel solver,
            30 orthogonal iterations from the unit vectors at every pixel (``grid`` is ignored). It
            reproduces ``bart ecalib`` also where two eigenvalues are close and 30 iterations have
            not converged (there BART's vector is not an eigenvector); slower.

    Returns:
        maps ``[..., C, H, W]`` (``sets=1``) or ``[..., M, C, H, W]``, same dtype/device as ``kspace``;
        unit norm over coils where not cropped. With ``return_eigenvalues``: ``(maps, eigenvalues)``.

    Raises:
        DTypeError, ShapeError: bad k-space.  DataError: no fully sampled calibration region of at least
        ``kernel`` lines, or no signal.  ConfigError: bad parameters.
    """
    who = "espirit_maps"
    _check_kspace(kspace, who)
    C, H, W = kspace.shape[-3:]
    if not (kernel == "auto" or (isinstance(kernel, numbers.Integral) and not isinstance(kernel, bool) and kernel >= 1)):
        raise ConfigError(f"{who}: kernel must be an integer >= 1 or 'auto', got {kernel!r}")
    if not 1 <= sets <= C:
        raise ConfigError(f"{who}: sets must be in [1, {C}] (the number of coils), got {sets}")
    if eig not in EIG_SOLVERS:
        raise ConfigError(f"{who}: eig must be one of {EIG_SOLVERS}, got {eig!r}")
    if not 0 <= crop < 1 or not thresh >= 0:
        raise ConfigError(f"{who}: need 0 <= crop < 1 and thresh >= 0, got crop={crop}, thresh={thresh}")
    lead = kspace.shape[:-3]
    ksp = kspace.reshape(-1, C, H, W)
    B = ksp.shape[0]
    refine_band = 0.05
    size, kernel = _resolve_calib(ksp, calib, kernel, who)
    cal = extract_calib(ksp, size)
    kernels, keep, _ = espirit_kernels(cal, kernel, thresh)
    Ghat = _gram_coefficients(kernels, keep)  # [B, 2k, 2k, C, C]
    rdtype = kspace.real.dtype
    dev = kspace.device

    def positions(n: int, m: int) -> torch.Tensor:
        # centred pixel coordinate of coarse sample j (j·n/m in array index) divided by n
        return (torch.arange(m, device=dev, dtype=torch.float64) * (n / m) - n // 2) / n

    gh = H if grid is None or grid >= H or eig == "bart" else int(grid)
    gw = W if grid is None or grid >= W or eig == "bart" else int(grid)
    Ghat = Ghat.to(torch.complex128)
    ref = _principal_coil_vector(cal)  # [B, C]: the phase reference
    G = _evaluate_gram(Ghat, positions(H, gh), positions(W, gw))  # [B, gh, gw, C, C]
    solve = _orthiter_eigen if eig == "bart" else _top_eigen
    lam, vecs = solve(G.to(kspace.dtype), sets, ref)  # [B, gh, gw, M], [B, gh, gw, C, M]
    maps = vecs.permute(0, 4, 3, 1, 2)  # [B, M, C, gh, gw]
    lam = lam.permute(0, 3, 1, 2)  # [B, M, gh, gw]
    if (gh, gw) != (H, W):
        Ph = _cubic_matrix(H, gh, kspace.dtype, dev)
        Pw = _cubic_matrix(W, gw, kspace.dtype, dev)
        # Coarse cells whose eigenvectors disagree with a neighbour (phase singularities, crossing
        # eigenvalues) cannot be interpolated: the fine pixels that use them are decomposed exactly,
        # and so are the pixels whose eigenvalue is close to the crop threshold.
        unit = maps / _coil_norm(maps).clamp_min(torch.finfo(rdtype).tiny)
        agree = torch.ones(B, gh, gw, dtype=rdtype, device=dev)
        for dim in (-2, -1):
            for step in (1, -1):
                nb = torch.roll(unit, step, dims=dim)
                agree = torch.minimum(agree, (unit.conj() * nb).sum(dim=-3).abs().amin(dim=1))
        bad = (agree < 0.95).to(rdtype)
        taps_h, taps_w = (Ph.real != 0).to(rdtype), (Pw.real != 0).to(rdtype)
        maps = Ph @ maps @ Pw.T
        lam = (Ph.real @ lam @ Pw.real.T)
        maps = maps / _coil_norm(maps).clamp_min(torch.finfo(rdtype).tiny)
        # (pixels whose eigenvalues are all far below the crop threshold are zeroed anyway)
        kept = (lam > crop - refine_band).any(dim=1)
        flagged = kept & ((taps_h @ bad @ taps_w.T > 0) | ((lam - crop).abs() < refine_band).any(dim=1))
        if bool(flagged.any()):
            maps, lam = _refine(maps, lam, flagged, Ghat, ref, sets, H, W)
    maps = maps * (lam > crop).unsqueeze(-3).to(rdtype)
    maps = maps.reshape(*lead, sets, C, H, W)
    lam = lam.to(rdtype).reshape(*lead, sets, H, W)
    if sets == 1:
        maps = maps.squeeze(-4)
    return (maps, lam) if return_eigenvalues else maps


# ---------------------------------------------------------------------------------------------
# Walsh maps (cheap option)
# ---------------------------------------------------------------------------------------------
def walsh_maps(kspace: torch.Tensor, calib: CalibSize = None, window: int = 5, grid: int = 64) -> torch.Tensor:
    """Adaptive-combine (Walsh et al., MRM 43:682, 2000) maps from the low-resolution calibration image.

    The calibration block is zero-filled to a ``grid``-sized image, the coil covariance is averaged
    over a ``window×window`` neighbourhood (periodic), its dominant eigenvector (phase relative to the
    first principal component) is interpolated to full size and normalised.

    Args:
        kspace: complex ``[..., C, H, W]``.
        calib: calibration block size or ``None`` to detect it (at most 24×24).
        window: neighbourhood width in coarse pixels.
        grid: coarse grid size per axis.

    Returns:
        maps ``[..., C, H, W]`` with unit norm over coils (no cropping: everywhere nonzero).
    """
    who = "walsh_maps"
    _check_kspace(kspace, who)
    C, H, W = kspace.shape[-3:]
    lead = kspace.shape[:-3]
    ksp = kspace.reshape(-1, C, H, W)
    size, _ = _resolve_calib(ksp, calib, 1, who)
    cal = extract_calib(ksp, size)
    gh, gw = min(grid, H), min(grid, W)
    low = torch.zeros(ksp.shape[0], C, gh, gw, dtype=ksp.dtype, device=ksp.device)
    ch, cw = min(size[0], gh), min(size[1], gw)
    r0, c0 = (gh - ch) // 2, (gw - cw) // 2
    low[..., r0:r0 + ch, c0:c0 + cw] = extract_calib(cal, (ch, cw))
    img = ifft2c(low)  # [B, C, gh, gw]
    cov = img.unsqueeze(-3) * img.unsqueeze(-4).conj()  # [B, C, C, gh, gw]
    box = torch.zeros(gh, gw, dtype=torch.float64, device=ksp.device)
    half = window // 2
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            box[dy % gh, dx % gw] = 1.0
    cov = torch.fft.ifft2(torch.fft.fft2(cov) * torch.fft.fft2(box.to(cov.dtype)))
    _, vecs = torch.linalg.eigh(cov.permute(0, 3, 4, 1, 2))
    v = vecs[..., -1]  # [B, gh, gw, C]
    ref = _principal_coil_vector(cal)
    phase = torch.sgn(torch.einsum("bc,bxyc->bxy", ref.conj(), v))
    v = (v * phase.conj().unsqueeze(-1)).permute(0, 3, 1, 2)  # [B, C, gh, gw]
    # the coarse grid is centred like the full one: sample j sits at full position j·H/gh (+ offset)
    Ph = _cubic_matrix(H, gh, ksp.dtype, ksp.device)
    Pw = _cubic_matrix(W, gw, ksp.dtype, ksp.device)
    Ph = torch.roll(Ph, shifts=H // 2 - round((gh // 2) * H / gh), dims=0)
    Pw = torch.roll(Pw, shifts=W // 2 - round((gw // 2) * W / gw), dims=0)
    maps = Ph @ v @ Pw.T
    maps = maps / _coil_norm(maps).clamp_min(torch.finfo(maps.real.dtype).tiny)
    return maps.reshape(*lead, C, H, W)


# ---------------------------------------------------------------------------------------------
# sigpy backend (cross-check)
# ---------------------------------------------------------------------------------------------
def espirit_maps_sigpy(kspace: torch.Tensor, calib: int | None = None, kernel: int = 6, thresh: float = 0.001,
                       crop: float = 0.8, max_iter: int = 100) -> torch.Tensor:
    """ESPIRiT maps from ``sigpy.mri.app.EspiritCalib`` (one set), with BART-style parameters.

    ``thresh`` is BART's (``sigpy`` receives ``sqrt(thresh)``); ``calib=None`` uses the detected
    fully sampled region's smaller side (sigpy takes a square calibration width). For cross-checking
    :func:`espirit_maps`; needs sigpy (imported here, not at module import).

    Args:
        kspace: complex ``[..., C, H, W]``.

    Returns:
        maps ``[..., C, H, W]`` (same dtype/device as ``kspace``).
    """
    import sigpy.mri.app

    _check_kspace(kspace, "espirit_maps_sigpy")
    C, H, W = kspace.shape[-3:]
    ksp = kspace.reshape(-1, C, H, W)
    if calib is None:
        calib = min(_resolve_calib(ksp, None, kernel, "espirit_maps_sigpy")[0])
    out = []
    for b in range(ksp.shape[0]):
        arr = ksp[b].detach().cpu().numpy()
        mps = sigpy.mri.app.EspiritCalib(arr, calib_width=int(calib), thresh=math.sqrt(thresh), kernel_width=kernel,
                                         crop=crop, max_iter=max_iter, show_pbar=False).run()
        out.append(torch.from_numpy(mps).to(device=kspace.device, dtype=kspace.dtype))
    return torch.stack(out).reshape(kspace.shape)


def _coil_norm(x: torch.Tensor, dim: int = -3, keepdim: bool = True) -> torch.Tensor:
    """``‖x‖`` over ``dim`` (complex ``vector_norm`` along a dim is very slow on CPU)."""
    return (x.real.square() + x.imag.square()).sum(dim=dim, keepdim=keepdim).sqrt()


def map_projection(a: torch.Tensor, b: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """``|<a, b>| / (‖a‖‖b‖)`` per pixel over the coil axis: 1 where two maps agree up to a phase.

    Pixels where either map is zero give 0.
    """
    num = (a.conj() * b).sum(dim=dim).abs()
    den = _coil_norm(a, dim, keepdim=False) * _coil_norm(b, dim, keepdim=False)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))
