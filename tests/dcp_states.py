"""State dicts for checkpoint tests: a model, its optimizer, odd dtypes and plain objects."""

from __future__ import annotations

import copy
from typing import Any

import torch


def training_state(seed: int = 0, width: int = 64) -> dict[str, Any]:
    """Model + Adam state after one step, tensors of every awkward kind, and non-tensor objects."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(), torch.nn.Linear(width, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 32)).pow(2).sum().backward()
    optimizer.step()
    extras = {
        "half": torch.randn(17, dtype=torch.float16),
        "bfloat": torch.randn(3, 5, dtype=torch.bfloat16),
        "int8": torch.randint(-128, 127, (33,), dtype=torch.int8),
        "int64": torch.arange(10, dtype=torch.int64) * (seed + 1),
        "mask": torch.rand(9) > 0.5,
        "complex": torch.randn(4, dtype=torch.complex64),
        "scalar": torch.tensor(2.5 + seed),
        "int_scalar": torch.tensor(7 + seed),
        "specials": torch.tensor([float("nan"), float("inf"), -0.0, float("-inf")]),
        "empty": torch.zeros(0, 3),
    }
    objects = {
        "step": 12 + seed,
        "config": {"lr": 1e-3, "name": f"run-{seed}"},
        "tags": ["a", "b"],
        "blob": b"\x00\x01",
    }
    return {"model": model.state_dict(), "optim": optimizer.state_dict(), "extras": extras, "meta": objects}


def blank_like(state: Any) -> Any:
    """Same structure, tensors zeroed, plain values replaced: a target that proves a load wrote everything."""
    blank = copy.deepcopy(state)

    def clear(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            return torch.zeros_like(node)
        if isinstance(node, dict):
            return {key: clear(value) for key, value in node.items()}
        if isinstance(node, list):
            return [clear(value) for value in node]
        if isinstance(node, str | bytes | int | float | tuple):
            return None
        return node

    return clear(blank)


def bits(tensor: torch.Tensor) -> bytes:
    """A tensor's exact bit pattern (NaN payloads and signed zeros included)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same_state(got: Any, expected: Any, path: str = "") -> None:
    """Equal structure, equal plain values, tensors equal bit for bit with the same dtype and shape."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor), f"{path}: {type(got).__name__} instead of a tensor"
        assert (got.dtype, got.shape) == (expected.dtype, expected.shape), f"{path}: dtype or shape differ"
        assert bits(got) == bits(expected), f"{path}: tensor bits differ"
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), f"{path}: keys differ"
        for key in expected:
            assert_same_state(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{path}: list length differs"
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same_state(g, e, f"{path}[{index}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def all_zero(state: Any) -> bool:
    """True when every tensor in ``state`` is still all zeros (nothing was loaded into it)."""
    if isinstance(state, torch.Tensor):
        return not bool(state.any()) if state.numel() else True
    if isinstance(state, dict):
        return all(all_zero(value) for value in state.values())
    if isinstance(state, list):
        return all(all_zero(value) for value in state)
    return True
