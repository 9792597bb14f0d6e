"""Atomic DCP loads: torch's reads are received into staging and written into the state dict only at the end.

torch's ``read_data`` copies each tensor into the state dict as soon as it is
read. ``StagedLoad`` hands torch stand-ins instead (``_CapturedCopy``: a meta
tensor that records what is copied into it), so a load that fails halfway
leaves the state dict untouched; ``commit()`` writes everything once the whole
plan has arrived.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem


class ForwardingPlanner(LoadPlanner):
    """A planner that hands every call to another one; subclasses intercept the reads they care about."""

    def __init__(self, planner: LoadPlanner) -> None:
        self._planner = planner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._planner, name)

    def set_up_planner(self, state_dict: Any, metadata: Metadata | None = None, is_coordinator: bool = False) -> None:
        self._planner.set_up_planner(state_dict, metadata, is_coordinator)

    def create_local_plan(self) -> LoadPlan:
        return self._planner.create_local_plan()

    def create_global_plan(self, global_plan: list[LoadPlan]) -> list[LoadPlan]:
        return self._planner.create_global_plan(global_plan)

    def finish_plan(self, central_plan: LoadPlan) -> LoadPlan:
        return self._planner.finish_plan(central_plan)

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        return self._planner.resolve_tensor(read_item)

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        self._planner.commit_tensor(read_item, tensor)

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        self._planner.load_bytes(read_item, value)


class _CapturedCopy(torch.Tensor):
    """Stands in for a target tensor while a load is staged: remembers what is copied into it, copies nothing.

    It has the target's shape and dtype on the ``meta`` device (no memory).
    torch's ``read_data`` checks its size and calls ``copy_(loaded)``; this
    keeps ``loaded`` (the tensor ``torch.load`` just made) instead of copying
    it, so staging costs no extra copy of the data. Anything else torch might
    do with it acts on a meta tensor and is caught at commit, loudly.
    """

    source: torch.Tensor | None

    @staticmethod
    def __new__(cls, like: torch.Tensor) -> _CapturedCopy:
        return torch.Tensor._make_subclass(cls, torch.empty(like.size(), dtype=like.dtype, device="meta"))

    def __init__(self, like: torch.Tensor) -> None:
        self.source = None

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.Tensor.copy_ and isinstance(args[0], _CapturedCopy):
            target, source = args[0], args[1]
            # A narrow view of a larger loaded tensor (resharding) would keep
            # the whole of it alive: keep a compact copy of just the view.
            view_bytes = source.numel() * source.element_size()
            target.source = source if source.untyped_storage().nbytes() == view_bytes else source.clone()
            return target
        if func is torch.Tensor.detach and isinstance(args[0], _CapturedCopy):
            return args[0]
        return super().__torch_function__(func, types, args, kwargs or {})  # type: ignore[no-untyped-call]


class StagedLoad(ForwardingPlanner):
    """A planner proxy that receives torch's reads into staging and applies them only on ``commit``.

    torch's ``read_data`` copies each tensor into ``resolve_tensor``'s target
    as soon as it is read. Handing it stand-ins instead means an error halfway
    (an object overwritten mid-load, a dropped endpoint) leaves the real state
    dict untouched; the loaded tensors are kept as torch made them and copied
    into the state dict once, at commit. Planning is the real planner's.
    """

    def __init__(self, planner: LoadPlanner) -> None:
        super().__init__(planner)
        self._staged: list[tuple[ReadItem, _CapturedCopy | bytes]] = []

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        return _CapturedCopy(self._planner.resolve_tensor(read_item))

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, _CapturedCopy):
            raise TypeError(f"staged load of {read_item.dest_index}: torch committed a tensor it was not given")
        self._staged.append((read_item, tensor))

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        self._staged.append((read_item, value.getvalue()))

    def commit(self) -> None:
        for read_item, staged in self._staged:
            if isinstance(staged, bytes):
                self._planner.load_bytes(read_item, io.BytesIO(staged))
                continue
            if staged.source is None:
                raise RuntimeError(
                    f"staged load of {read_item.dest_index}: torch did not copy the loaded tensor in; "
                    "this torch version reads differently, load with S3StorageReader(..., atomic=False)"
                )
            target = self._planner.resolve_tensor(read_item).detach()
            target.copy_(staged.source)
            self._planner.commit_tensor(read_item, target)
        self._staged = []
