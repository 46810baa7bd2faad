"""Compatibility layer for auto-LiRPA 0.3 on current torch / numpy, plus a small bound API.

auto-LiRPA's only PyPI release (0.3, 2022) targets ``torch<1.13`` and numpy 1.x.  On torch 2.x and
numpy 2 it fails to import and to trace models.  :func:`import_auto_lirpa` installs the minimal
shims that let it compute IBP, CROWN-IBP and CROWN bounds of MLP policies (each one only if the
thing it provides is missing; applying twice is a no-op; :func:`applied_patches` lists them):

1. ``numpy.lib.arraysetops`` (removed in numpy 2) is aliased to a module exposing ``isin`` & co.
2. ``torch.onnx.symbolic_helper._set_opset_version`` (removed) is re-provided; it sets
   ``export_onnx_opset_version`` on the TorchScript exporter's ``GLOBALS`` object
   (``torch.onnx._internal.torchscript_exporter._globals`` on torch 2.13).
3. ``torch._C.Node.__getitem__`` (formerly installed by ``torch.onnx.utils``) is restored: it
   dispatches on ``node.kindOf(name)`` to the typed attribute getter (``f``, ``i``, ``t``, ``is``..).
4. ``torch._six`` (removed in torch 2.0) is provided with ``string_classes``, used by
   ``BoundedModule.register_parameter``.
5. ``BoundedModule._named_members`` accepts the ``remove_duplicate`` argument that
   ``nn.Module.named_parameters`` passes since torch 2.0 (``bmodel.parameters()`` raised).
6. (speed only) ``BoundTanh.precompute_relaxation`` is memoised: every tanh node otherwise
   recomputes the same 50,000-point tangent table (~0.3 s each).

Importing auto_LiRPA also calls ``logging.basicConfig`` and ``warnings.simplefilter("once")``;
both are neutralised during the import.  It also calls
``torch._C._jit_set_profiling_executor(False)`` / ``_jit_set_profiling_mode(False)``
process-wide, which is left as is (it only matters to TorchScript users).
Bounds are float32 only: the tanh tangent table is float32, so a float64 model fails in
CROWN / CROWN-IBP (IBP works).

The rest of robbench uses :func:`import_auto_lirpa`, :func:`bounded_module`, :func:`bounds` and
:func:`mixed_ibp_crown_ibp`; nothing else should import ``auto_LiRPA`` directly.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import logging
import sys
import types
import warnings
from typing import Any, Callable

import torch

__all__ = [
    "METHODS",
    "apply_patches",
    "applied_patches",
    "import_auto_lirpa",
    "bounded_module",
    "bounds",
    "mixed_ibp_crown_ibp",
]

#: Bound methods understood by :func:`bounds`.
METHODS: tuple[str, ...] = ("ibp", "crown-ibp", "crown")

# auto_LiRPA method name per robbench method name (``compute_bounds(method=...)``).
_LIRPA_METHOD = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}

_APPLIED: list[str] = []  # names of patches this process actually had to install
_AUTO_LIRPA: Any = None


# --------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------


def _patch_numpy_arraysetops() -> bool:
    import numpy as np

    try:
        importlib.import_module("numpy.lib.arraysetops")  # numpy < 2
        return False
    except ImportError:
        pass
    mod = types.ModuleType("numpy.lib.arraysetops")
    mod.__doc__ = "robbench shim: numpy 2 removed numpy.lib.arraysetops (auto-LiRPA 0.3 imports isin)."
    for name in (
        "ediff1d", "in1d", "intersect1d", "isin", "setdiff1d", "setxor1d", "union1d", "unique",
    ):
        fn = getattr(np, name, None)
        if fn is None and name == "in1d":  # removed in numpy 2.4; 1-d isin is equivalent
            def fn(ar1, ar2, assume_unique=False, invert=False, *, kind=None):  # noqa: E306
                return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique,
                               invert=invert, kind=kind)
        if fn is not None:
            setattr(mod, name, fn)
    sys.modules["numpy.lib.arraysetops"] = mod
    np.lib.arraysetops = mod  # type: ignore[attr-defined]
    return True


def _onnx_globals() -> Any:
    """The TorchScript ONNX exporter's GLOBALS object (its location moved across torch versions)."""
    for modname in (
        "torch.onnx._internal.torchscript_exporter._globals",  # torch >= 2.9
        "torch.onnx._globals",  # torch 1.13 - 2.8
    ):
        try:
            mod = __import__(modname, fromlist=["GLOBALS"])
            return mod.GLOBALS
        except (ImportError, AttributeError):
            continue
    raise ImportError("cannot locate torch.onnx GLOBALS (export_onnx_opset_version)")


def _patch_set_opset_version() -> bool:
    import torch.onnx.symbolic_helper as sh

    if hasattr(sh, "_set_opset_version"):
        return False
    globals_ = _onnx_globals()
    if not hasattr(globals_, "export_onnx_opset_version"):
        raise ImportError("torch.onnx GLOBALS has no export_onnx_opset_version")

    def _set_opset_version(opset_version: int) -> None:
        globals_.export_onnx_opset_version = opset_version

    sh._set_opset_version = _set_opset_version  # type: ignore[attr-defined]
    return True


def _node_getitem(self: Any, name: str) -> Any:
    """``node[name]``: typed attribute access, dispatching on ``node.kindOf(name)``.

    Kinds are the JIT attribute kinds: 'f', 'fs', 'c', 'cs', 'i', 'is', 's', 'ss', 't', 'ts',
    'g', 'gs', 'ival', 'ty', 'tys'; each has a same-named getter method on ``torch._C.Node``.
    """
    kind = self.kindOf(name)
    getter = getattr(self, kind, None)
    if getter is None:
        raise KeyError(f"unsupported attribute kind {kind!r} for attribute {name!r} of {self.kind()}")
    return getter(name)


def _patch_node_getitem() -> bool:
    if hasattr(torch._C.Node, "__getitem__"):
        return False
    torch._C.Node.__getitem__ = _node_getitem  # type: ignore[attr-defined]
    return True


def _patch_torch_six() -> bool:
    try:
        importlib.import_module("torch._six")
        return False
    except ImportError:
        pass
    mod = types.ModuleType("torch._six")
    mod.__doc__ = "robbench shim: torch 2 removed torch._six (auto-LiRPA 0.3 uses string_classes)."
    mod.string_classes = (str, bytes)  # type: ignore[attr-defined]
    mod.int_classes = int  # type: ignore[attr-defined]
    mod.inf = float("inf")  # type: ignore[attr-defined]
    sys.modules["torch._six"] = mod
    torch._six = mod  # type: ignore[attr-defined]
    return True


_PATCHES: tuple[tuple[str, Callable[[], bool]], ...] = (
    ("numpy.lib.arraysetops", _patch_numpy_arraysetops),
    ("torch.onnx.symbolic_helper._set_opset_version", _patch_set_opset_version),
    ("torch._C.Node.__getitem__", _patch_node_getitem),
    ("torch._six", _patch_torch_six),
)


def apply_patches() -> list[str]:
    """Install every compat shim that this torch/numpy needs (idempotent).

    Returns the names of the patches installed so far in this process.
    """
    for name, fn in _PATCHES:
        if name not in _APPLIED and fn():
            _APPLIED.append(name)
    return list(_APPLIED)


def applied_patches() -> list[str]:
    """Names of the compat patches installed in this process (empty on an old torch/numpy)."""
    return list(_APPLIED)


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def import_auto_lirpa() -> Any:
    """Return the ``auto_LiRPA`` module, after applying the compat patches.

    Raises ``RuntimeError`` with a one-sentence explanation if auto-LiRPA is not installed or if
    this torch/numpy breaks it in a way the shims do not cover.
    """
    global _AUTO_LIRPA
    if _AUTO_LIRPA is not None:
        return _AUTO_LIRPA
    if importlib.util.find_spec("auto_LiRPA") is None:
        raise RuntimeError(
            "auto-LiRPA is not installed, but certified bounds need it "
            "(pip install auto-LiRPA==0.3 --no-deps)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.onnx / auto_LiRPA use deprecated torch.jit.script
            apply_patches()
            with _no_global_side_effects():
                import auto_LiRPA
        _patch_bounded_module(auto_LiRPA)
        _patch_precompute_relaxation(auto_LiRPA)
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("auto_LiRPA")]:
            logging.getLogger(name).setLevel(logging.WARNING)
    except Exception as e:
        raise RuntimeError(
            f"auto-LiRPA {_installed_version()} cannot be imported on torch {torch.__version__} "
            f"even with robbench's compat patches ({type(e).__name__}: {e})."
        ) from e
    _AUTO_LIRPA = auto_LiRPA
    return auto_LiRPA


@contextlib.contextmanager
def _no_global_side_effects() -> Any:
    """Keep auto_LiRPA's import from reconfiguring the host process.

    At import it calls ``logging.basicConfig`` (installing a root handler for the whole program)
    and ``warnings.simplefilter("once")``: neutralise both while it is imported.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    had_handlers = bool(root.handlers)
    if not had_handlers:
        root.addHandler(guard)  # basicConfig is a no-op when the root logger has a handler
    simplefilter = warnings.simplefilter
    warnings.simplefilter = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.simplefilter = simplefilter
        if not had_handlers:
            root.removeHandler(guard)


def _patch_bounded_module(lirpa: Any) -> None:
    """Patch 5: ``BoundedModule._named_members`` lacks the ``remove_duplicate`` argument that
    ``nn.Module.named_parameters`` passes since torch 2.0, so ``bmodel.parameters()`` raised."""
    cls = lirpa.BoundedModule
    orig = cls._named_members
    if getattr(orig, "_robbench_patched", False):
        return
    if "remove_duplicate" in inspect.signature(orig).parameters:
        return

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        # auto_LiRPA's version always de-duplicates (and maps names back to the original module).
        return orig(self, get_members_fn, prefix=prefix, recurse=recurse)

    _named_members._robbench_patched = True  # type: ignore[attr-defined]
    cls._named_members = _named_members
    _APPLIED.append("auto_LiRPA.BoundedModule._named_members(remove_duplicate=...)")


_RELAXATION_CACHE: dict[tuple, tuple] = {}


def _patch_precompute_relaxation(lirpa: Any) -> None:
    """Patch 6 (speed only): memoise ``BoundTanh.precompute_relaxation``.

    Every tanh/sigmoid/atan node of every BoundedModule recomputes the same 50,000-entry
    tangent-point table by binary search (~0.3 s per node, several seconds on a loaded machine).
    The table depends only on the function, ``x_limit`` and the device, and is only read
    (``index_select``) afterwards, so the nodes share one copy.
    """
    from auto_LiRPA.operators.activation import BoundTanh

    orig = BoundTanh.precompute_relaxation
    if getattr(orig, "_robbench_patched", False):
        return

    def precompute_relaxation(self, name, func, dfunc, x_limit=500):
        key = (type(self).__qualname__, name, x_limit, str(self.device), torch.get_default_dtype())
        hit = _RELAXATION_CACHE.get(key)
        if hit is None:
            orig(self, name, func, dfunc, x_limit)
            _RELAXATION_CACHE[key] = (self.x_limit, self.step_pre, self.num_points_pre,
                                      self.d_lower, self.d_upper)
        else:
            (self.x_limit, self.step_pre, self.num_points_pre, self.d_lower, self.d_upper) = hit

    precompute_relaxation._robbench_patched = True  # type: ignore[attr-defined]
    precompute_relaxation._robbench_orig = orig  # type: ignore[attr-defined]
    BoundTanh.precompute_relaxation = precompute_relaxation
    _APPLIED.append("auto_LiRPA BoundTanh.precompute_relaxation memoised (speed)")


def _installed_version() -> str:
    try:
        from importlib.metadata import version

        return version("auto-LiRPA")
    except Exception:
        return "(unknown version)"


# --------------------------------------------------------------------------------------------
# bound API
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence auto_LiRPA's logger, warnings and stdout chatter during tracing/bounding."""
    logger = logging.getLogger("auto_LiRPA")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(old)


UNSUPPORTED_LAYERS: tuple[type, ...] = (torch.nn.ELU,)
"""Activations robbench policies may have (robbench.policy.ACTIVATIONS) that auto-LiRPA 0.3 cannot bound."""


def bounded_module(model: torch.nn.Module, example_input: torch.Tensor) -> Any:
    """Wrap ``model`` (a feed-forward ``Tensor -> Tensor`` module) as an ``auto_LiRPA.BoundedModule``.

    The BoundedModule shares its parameters with ``model`` (bounds differentiate into them); its
    batch size is free, ``example_input`` only fixes the feature shape and device.
    """
    unsupported = sorted({type(m).__name__ for m in model.modules() if isinstance(m, UNSUPPORTED_LAYERS)})
    if unsupported:
        from robbench.errors import RobbenchError

        raise RobbenchError(f"certified bounds do not support {', '.join(unsupported)} layers (auto-LiRPA 0.3 has "
                            "no relaxation for them); only Linear networks with tanh or ReLU activations are bounded")
    lirpa = import_auto_lirpa()
    try:
        with _quiet():
            bmodel = lirpa.BoundedModule(
                model, example_input.detach(), device=str(example_input.device),
            )
    except Exception as e:
        raise RuntimeError(
            f"auto-LiRPA could not trace {type(model).__name__} on torch {torch.__version__} "
            f"({type(e).__name__}: {e})."
        ) from e
    return bmodel


def _eps_tensor(x: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps_t.ndim == 0:
        return eps_t.expand(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
    if eps_t.ndim == 1:
        if eps_t.shape[0] != x.shape[0]:
            raise ValueError(f"per-row eps has {eps_t.shape[0]} entries for a batch of {x.shape[0]}")
        return eps_t.reshape((-1,) + (1,) * (x.ndim - 1))
    return eps_t  # already broadcastable to x (e.g. per-feature radius)


def bounds(
    bmodel: Any, x: torch.Tensor, eps: float | torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower/upper bounds of ``bmodel`` over the ℓ∞ ball ``{x' : |x' - x|_∞ <= eps}`` per row.

    ``x`` is a batch (``[B, ...]``); ``eps`` a scalar or a per-row ``[B]`` tensor. ``method`` is one
    of ``"ibp"`` (interval bound propagation), ``"crown-ibp"`` (IBP intermediate bounds, CROWN
    final layer; Zhang et al. 2020) or ``"crown"`` (backward linear relaxation at every layer).
    The bounds are differentiable w.r.t. the model parameters (for certified training losses).
    """
    if method not in _LIRPA_METHOD:
        raise ValueError(f"unknown bound method {method!r}; expected one of {METHODS}")
    lirpa = import_auto_lirpa()
    eps_t = _eps_tensor(x, eps)
    if bool((eps_t < 0).any()):
        raise ValueError("eps must be >= 0")
    # x_L/x_U define the ball exactly (also for per-row eps); norm=inf selects the ℓ∞ box.
    ptb = lirpa.PerturbationLpNorm(norm=float("inf"), eps=eps_t, x_L=x - eps_t, x_U=x + eps_t)
    bx = lirpa.BoundedTensor(x, ptb)
    lb, ub = bmodel.compute_bounds(x=(bx,), method=_LIRPA_METHOD[method])
    return lb, ub


def mixed_ibp_crown_ibp(
    bmodel: Any, x: torch.Tensor, eps: float | torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``beta * IBP + (1 - beta) * CROWN-IBP`` bounds, as in SA-PPO's convex relaxation training.

    Both are sound, so any convex combination is sound. ``beta`` is annealed from 1 to 0 in
    CROWN-IBP training (Zhang et al. 2020, "Towards stable and efficient training ...").
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError("beta must be in [0, 1]")
    if beta == 1.0:
        return bounds(bmodel, x, eps, "ibp")
    if beta == 0.0:
        return bounds(bmodel, x, eps, "crown-ibp")
    ilb, iub = bounds(bmodel, x, eps, "ibp")
    clb, cub = bounds(bmodel, x, eps, "crown-ibp")
    return beta * ilb + (1 - beta) * clb, beta * iub + (1 - beta) * cub
