"""Linear-operator algebra on torch complex tensors.

A :class:`Linop` ``A`` maps tensors whose trailing dimensions are ``A.ishape`` to tensors whose
trailing dimensions are ``A.oshape``; any leading dimensions are batch dimensions and are
broadcast against the operator's own batch dimensions (e.g. a batch of coil maps).

Algebra (after sigpy's Linop, but every operator is a differentiable torch operator)::

    E = Sample(mask, shape) @ FFT(shape) @ CoilExpand(maps)   # composition
    x0 = E.H(y)                                             # adjoint
    EHE = E.N                                               # normal operator, may be a fast form
    R = A + B; S = 2.0 * A; V = VStack([A, B])

Operators are immutable: :meth:`Linop.replace` returns a new operator with some constructor
arguments changed (``A.replace(mask=new_mask)``).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from mrirecon.errors import DTypeError, NonFiniteError, ShapeError

Shape = tuple[int, ...]

_CHECK_FINITE = True


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Turn the NaN/Inf check on operator inputs on or off inside a ``with`` block.

    The check costs one reduction over the input; iterative solvers switch it off in their
    inner loop after validating their inputs once.
    """
    global _CHECK_FINITE
    previous = _CHECK_FINITE
    _CHECK_FINITE = enabled
    try:
        yield
    finally:
        _CHECK_FINITE = previous


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_tensor(x: Any, shape: Shape, who: str, what: str = "input") -> None:
    """Validate that ``x`` is a complex tensor whose trailing dims equal ``shape``.

    Raises:
        DTypeError: ``x`` is not a tensor or not complex.
        ShapeError: the trailing dimensions differ from ``shape``.
        NonFiniteError: ``x`` holds NaN or Inf (while :func:`finite_checks` is on).
    """
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{who}: expected a complex torch tensor as {what} [..., {_fmt(shape)[1:]}, "
                         f"got {type(x).__name__}")
    if not x.is_complex():
        raise DTypeError(f"{who}: expected a complex tensor as {what} (complex64/complex128), "
                         f"got {x.dtype} of shape {_fmt(x.shape)}")
    n = len(shape)
    if x.ndim < n or tuple(x.shape[x.ndim - n:]) != tuple(shape):
        diff = "" if x.ndim < n else "; " + ", ".join(
            f"dim {i - n} is {x.shape[x.ndim - n + i]}, expected {s}"
            for i, s in enumerate(shape) if x.shape[x.ndim - n + i] != s)
        raise ShapeError(f"{who}: expected {what} of shape [..., {_fmt(shape)[1:]}, "
                         f"got {_fmt(x.shape)} ({x.dtype}){diff}")
    if _CHECK_FINITE and not torch.isfinite(x).all():
        raise NonFiniteError(f"{who}: {what} of shape {_fmt(x.shape)} contains NaN or Inf")


class Linop:
    """Base class of linear operators.

    Subclasses set ``ishape``/``oshape`` (trailing dimensions) in ``__init__`` through
    ``super().__init__`` and implement ``_apply`` and ``_adjoint``. They may override
    ``_normal`` with a faster form of ``A^H A``. Constructor arguments are recorded by
    :meth:`_record` so that :meth:`replace` can rebuild the operator.

    Args:
        ishape: trailing input dimensions.
        oshape: trailing output dimensions.
    """

    def __init__(self, ishape: Sequence[int], oshape: Sequence[int]) -> None:
        self.ishape: Shape = tuple(int(s) for s in ishape)
        self.oshape: Shape = tuple(int(s) for s in oshape)
        if not hasattr(self, "_params"):
            self._params: dict[str, Any] = {}

    # -- construction helpers -------------------------------------------------------------
    def _record(self, **params: Any) -> None:
        """Remember constructor arguments for :meth:`replace`, :meth:`to` and ``repr``."""
        self._params = dict(params)

    @property
    def name(self) -> str:
        """Short name used in error messages."""
        return type(self).__name__

    # -- application ----------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator: ``y = A x``. ``x``: complex ``[..., *ishape]``."""
        self.check_input(x)
        return self._apply(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint: ``x = A^H y``. ``y``: complex ``[..., *oshape]``."""
        self.check_adjoint_input(y)
        return self._adjoint(y)

    def check_input(self, x: torch.Tensor) -> None:
        """Validate an input of ``A`` (subclasses may add more specific messages)."""
        check_tensor(x, self.ishape, self.name, "input")

    def check_adjoint_input(self, y: torch.Tensor) -> None:
        """Validate an input of ``A^H`` (subclasses may add more specific messages)."""
        check_tensor(y, self.oshape, f"{self.name}.H", "input")

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normal(self) -> Linop:
        return Compose([Adjoint(self), self])

    # -- algebra --------------------------------------------------------------------------
    @property
    def H(self) -> Linop:  # noqa: N802 - the usual notation
        """The adjoint operator ``A^H``."""
        return Adjoint(self)

    @property
    def N(self) -> Linop:  # noqa: N802
        """The normal operator ``A^H A`` (a fast form where the operator defines one)."""
        return self._normal()

    def __matmul__(self, other: Linop | torch.Tensor) -> Linop | torch.Tensor:
        if isinstance(other, Linop):
            return Compose([self, other])
        if isinstance(other, torch.Tensor):
            return self(other)
        return NotImplemented

    def __add__(self, other: Linop) -> Linop:
        if not isinstance(other, Linop):
            return NotImplemented
        return Sum([self, other])

    def __sub__(self, other: Linop) -> Linop:
        if not isinstance(other, Linop):
            return NotImplemented
        return Sum([self, Scale(other, -1.0)])

    def __neg__(self) -> Linop:
        return Scale(self, -1.0)

    def __mul__(self, a: complex | float | int) -> Linop:
        if isinstance(a, (int, float, complex)) and not isinstance(a, bool):
            return Scale(self, a)
        return NotImplemented

    __rmul__ = __mul__

    # -- immutability helpers -------------------------------------------------------------
    def replace(self, **changes: Any) -> Linop:
        """Return a new operator with some constructor arguments replaced.

        Raises:
            TypeError: an argument name that this operator's constructor does not take.
        """
        unknown = set(changes) - set(self._params)
        if unknown:
            raise TypeError(f"{self.name}.replace: unknown argument(s) {sorted(unknown)}; "
                            f"this operator takes {sorted(self._params)}")
        return type(self)(**{**self._params, **changes})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Linop:
        """Return a copy whose tensors are on ``device`` (and complex/real dtype matched to ``dtype``)."""

        def move(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                if dtype is None or not (v.is_complex() or v.is_floating_point()):
                    return v.to(device=device)
                return v.to(device=device, dtype=dtype if v.is_complex() else _real_dtype(dtype))
            if isinstance(v, Linop):
                return v.to(device, dtype)
            if isinstance(v, (list, tuple)):
                return type(v)(move(u) for u in v)
            return v

        return type(self)(**{k: move(v) for k, v in self._params.items()})

    def __repr__(self) -> str:
        return f"{self.name}({_fmt(self.ishape)} -> {_fmt(self.oshape)})"


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision as ``dtype``."""
    return {torch.float32: torch.complex64, torch.float64: torch.complex128,
            torch.float16: torch.complex64}.get(dtype, dtype)


class Adjoint(Linop):
    """The adjoint ``A^H`` of an operator; ``Adjoint(A).H`` is ``A`` again."""

    def __init__(self, op: Linop) -> None:
        super().__init__(op.oshape, op.ishape)
        self._record(op=op)
        self.op = op

    @property
    def name(self) -> str:
        return f"{self.op.name}.H"

    def check_input(self, x: torch.Tensor) -> None:
        self.op.check_adjoint_input(x)

    def check_adjoint_input(self, y: torch.Tensor) -> None:
        self.op.check_input(y)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._adjoint(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._apply(y)

    @property
    def H(self) -> Linop:  # noqa: N802
        return self.op

    def _normal(self) -> Linop:
        return Compose([self.op, Adjoint(self.op)])


class Compose(Linop):
    """Composition ``A1 @ A2 @ ... @ An`` (``An`` is applied first).

    Raises:
        ShapeError: when an operator's input shape differs from the next one's output shape.
    """

    def __init__(self, ops: Sequence[Linop]) -> None:
        flat: list[Linop] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Compose) else [op])
        if not flat:
            raise ValueError("Compose: needs at least one operator")
        for left, right in zip(flat[:-1], flat[1:]):
            if left.ishape != right.oshape:
                raise ShapeError(f"Compose: {left.name} takes input {_fmt(left.ishape)} but "
                                 f"{right.name} gives output {_fmt(right.oshape)}")
        super().__init__(flat[-1].ishape, flat[0].oshape)
        self._record(ops=flat)
        self.ops = flat

    @property
    def name(self) -> str:
        return " @ ".join(op.name for op in self.ops)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        for op in reversed(self.ops):
            x = op._apply(x)
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            y = op._adjoint(y)
        return y


class Sum(Linop):
    """Sum ``A1 + A2 + ...`` of operators with equal input and output shapes."""

    def __init__(self, ops: Sequence[Linop]) -> None:
        flat: list[Linop] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Sum) else [op])
        first = flat[0]
        for op in flat[1:]:
            if op.ishape != first.ishape or op.oshape != first.oshape:
                raise ShapeError(f"Sum: {first.name} maps {_fmt(first.ishape)} -> {_fmt(first.oshape)} but "
                                 f"{op.name} maps {_fmt(op.ishape)} -> {_fmt(op.oshape)}")
        super().__init__(first.ishape, first.oshape)
        self._record(ops=flat)
        self.ops = flat

    @property
    def name(self) -> str:
        return "(" + " + ".join(op.name for op in self.ops) + ")"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ops[0]._apply(x)
        for op in self.ops[1:]:
            out = out + op._apply(x)
        return out

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = self.ops[0]._adjoint(y)
        for op in self.ops[1:]:
            out = out + op._adjoint(y)
        return out


class Scale(Linop):
    """Scalar multiple ``a * A`` (``a`` real or complex)."""

    def __init__(self, op: Linop, scale: complex | float) -> None:
        super().__init__(op.ishape, op.oshape)
        self._record(op=op, scale=scale)
        self.op = op
        self.scale = scale

    @property
    def name(self) -> str:
        return f"{self.scale}*{self.op.name}"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._apply(x) * self.scale

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._adjoint(y) * complex(self.scale).conjugate()

    def _normal(self) -> Linop:
        return Scale(self.op.N, abs(complex(self.scale)) ** 2)


class VStack(Linop):
    """Vertical stack ``[A1; A2; ...]`` of operators with a common input shape.

    The output is the concatenation of the flattened outputs: shape ``[..., sum_i prod(Ai.oshape)]``.
    Use :meth:`split` to recover the individual outputs.
    """

    def __init__(self, ops: Sequence[Linop]) -> None:
        ops = list(ops)
        if not ops:
            raise ValueError("VStack: needs at least one operator")
        for op in ops[1:]:
            if op.ishape != ops[0].ishape:
                raise ShapeError(f"VStack: {ops[0].name} takes input {_fmt(ops[0].ishape)} but "
                                 f"{op.name} takes {_fmt(op.ishape)}")
        self.sizes = [math.prod(op.oshape) for op in ops]
        super().__init__(ops[0].ishape, (sum(self.sizes),))
        self._record(ops=ops)
        self.ops = ops

    @property
    def name(self) -> str:
        return "[" + "; ".join(op.name for op in self.ops) + "]"

    def split(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Split a stacked output ``[..., sum sizes]`` into the outputs of each operator."""
        parts = torch.split(y, self.sizes, dim=-1)
        return [p.reshape(*p.shape[:-1], *op.oshape) for p, op in zip(parts, self.ops)]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for op in self.ops:
            y = op._apply(x)
            outs.append(y.reshape(*y.shape[: y.ndim - len(op.oshape)], -1))
        batch = torch.broadcast_shapes(*[o.shape[:-1] for o in outs])
        return torch.cat([o.expand(*batch, o.shape[-1]) for o in outs], dim=-1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = None
        for part, op in zip(self.split(y), self.ops):
            v = op._adjoint(part)
            out = v if out is None else out + v
        assert out is not None
        return out

    def _normal(self) -> Linop:
        return Sum([op.N for op in self.ops])


class Identity(Linop):
    """The identity on tensors with trailing dimensions ``shape`` (the denoising forward model)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, shape)
        self._record(shape=tuple(shape))

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _normal(self) -> Linop:
        return self


class Multiply(Linop):
    """Elementwise multiplication by a fixed tensor ``w`` broadcastable to ``shape``: ``y = w * x``.

    Args:
        weights: real or complex tensor, broadcastable to ``shape`` (may carry batch dimensions).
        shape: trailing dimensions of input and output.

    Raises:
        ShapeError: ``weights`` does not broadcast to ``shape``.
    """

    def __init__(self, weights: torch.Tensor, shape: Sequence[int]) -> None:
        shape = tuple(shape)
        _check_broadcast(weights, shape, type(self).__name__, "weights")
        super().__init__(shape, shape)
        self._record(weights=weights, shape=shape)
        self.weights = weights

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * (self.weights.conj() if self.weights.is_complex() else self.weights)

    def _normal(self) -> Linop:
        w = self.weights
        return Multiply(w.abs() ** 2 if w.is_complex() else w * w, self.ishape)


def _check_broadcast(t: torch.Tensor, shape: Shape, who: str, what: str) -> None:
    """Raise :class:`ShapeError` unless the trailing dims of ``t`` broadcast to ``shape``."""
    if not isinstance(t, torch.Tensor):
        raise DTypeError(f"{who}: {what} must be a torch tensor, got {type(t).__name__}")
    n = min(t.ndim, len(shape))
    trailing = tuple(t.shape[t.ndim - n:]) if n else ()
    ok = all(a in (1, b) for a, b in zip(trailing, shape[len(shape) - n:]))
    if not ok:
        raise ShapeError(f"{who}: {what} of shape {_fmt(t.shape)} does not broadcast to [..., {_fmt(shape)[1:]}")


def dense_matrix(op: Linop, dtype: torch.dtype = torch.complex128,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The matrix of ``op`` (``[prod(oshape), prod(ishape)]``), built column by column. For tests on tiny sizes."""
    n = math.prod(op.ishape)
    eye = torch.eye(n, dtype=dtype, device=device).reshape(n, *op.ishape)
    cols = op._apply(eye)
    return cols.reshape(n, -1).T.contiguous()
