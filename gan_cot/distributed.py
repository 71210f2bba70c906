"""Everything about processes and devices in one place: the process group, the DeepSpeed engine's optimizer step,
collectives on the engine's device (NCCL refuses CPU tensors), and saving the adapter under ZeRO-3 (where each
process holds only a shard of every parameter)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch


class NonFiniteLoss(RuntimeError):
    """Too many non-finite losses in a row; the run stops with a checkpoint."""


def free_port() -> int:
    """A local TCP port nobody listens on now (a process group's rendezvous, a launcher's ``--master_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> tuple[int, int]:
    """Rank and world size; a plain ``python`` run becomes a one-process group (gloo on a CPU, NCCL on GPUs)."""
    import deepspeed

    # A one-process group of our own is marked with the process id and port; a child process (a script run from a
    # test or a notebook) inherits the marks, finds another pid and the parent's port, and opens its own group.
    pid, port = os.environ.get("GAN_COT_SOLO_GROUP", ":").split(":")
    inherited = port == os.environ.get("MASTER_PORT") and pid != str(os.getpid())
    if "RANK" not in os.environ or inherited:
        port = free_port()
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        os.environ["GAN_COT_SOLO_GROUP"] = f"{os.getpid()}:{port}"
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


class Strategy:
    """The DeepSpeed engine of the policy and the process group around it.

    :meth:`step` is the only place a loss goes backward; :meth:`sum` and :meth:`gather` are the only collectives.
    """

    def __init__(self, engine, rank: int, world: int, max_nan_steps: int, log=print):
        self.engine = engine
        self.rank = rank
        self.world = world
        self.is_main = rank == 0
        self.max_nan_steps = max_nan_steps
        self.nan_streak = 0
        self.log = log

    @property
    def model(self):
        """The peft model inside the engine."""
        return self.engine.module

    @property
    def device(self) -> torch.device:
        return self.engine.device if hasattr(self.engine, "device") else next(self.model.parameters()).device

    # -- optimisation ---------------------------------------------------------------------------------

    def step(self, loss: torch.Tensor) -> bool:
        """Backward and optimizer step; a non-finite loss is skipped with a warning (and counted)."""
        if not torch.isfinite(loss):
            self.nan_streak += 1
            self.log(f"warning: non-finite loss skipped ({self.nan_streak} in a row)")
            if self.nan_streak >= self.max_nan_steps:
                raise NonFiniteLoss(f"{self.nan_streak} non-finite losses in a row")
            return False
        self.nan_streak = 0
        self.engine.backward(loss)
        self.engine.step()
        return True

    @property
    def lr(self) -> float:
        """The adapter's current learning rate (the first parameter group)."""
        return self.engine.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        """The adapter's learning rate (the first parameter group; a gate's group keeps its own)."""
        self.engine.optimizer.param_groups[0]["lr"] = lr

    @contextlib.contextmanager
    def lr_for(self, lr: float | None):
        """The adapter's learning rate set to ``lr`` inside the block (None: unchanged), restored after."""
        if lr is None:
            yield
            return
        saved = self.lr
        self.set_lr(lr)
        try:
            yield
        finally:
            self.set_lr(saved)

    # -- collectives ----------------------------------------------------------------------------------

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64, on the engine's device)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def mean_grads(self, params) -> None:
        """Average the gradients of ``params`` (a model the engine does not own) over all processes."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world

    def gather(self, items: list) -> list:
        """This process's list joined with every other process's (rank order)."""
        if self.world == 1:
            return list(items)
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, list(items))
        return [x for part in parts for x in part]

    def barrier(self) -> None:
        torch.distributed.barrier()

    # -- saving ---------------------------------------------------------------------------------------

    def gathered(self, trainable_only: bool = False, modify: bool = False):
        """A context in which the model's parameters (or only the trainable ones) are whole on every process: ZeRO-3
        partitions them. With ``modify``, what the main process writes into them is partitioned back on exit."""
        params = [
            p for p in self.model.parameters() if hasattr(p, "ds_id") and (p.requires_grad or not trainable_only)
        ]
        if not params:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=0 if modify else None)

    @contextlib.contextmanager
    def for_generation(self):
        """Generation (or any forward-only work that reads every parameter) under ZeRO-3: the parameters are gathered
        once and ZeRO-3's per-module fetch hooks are taken off for the block, then put back; otherwise every module
        would fetch and release its parameters at every generated token. A no-op below ZeRO-3."""
        offload = getattr(getattr(self.engine, "optimizer", None), "parameter_offload", None)
        if offload is None or not any(hasattr(p, "ds_id") for p in self.model.parameters()):
            yield
            return
        with self.gathered():
            for param in offload.module.parameters(recurse=True):
                param.ds_active_sub_modules.clear()
            for hook in [*offload.forward_hooks, *offload.backward_hooks]:
                hook.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
            try:
                yield
            finally:
                coordinator = getattr(offload, "param_coordinator", None)
                if coordinator is not None and not coordinator.is_invalid_trace():
                    coordinator._invalidate_trace()  # the generation's forwards are not the training's trace
                offload._register_deepspeed_module(offload.module)

    def save_engine(self, folder: Path, tag: str) -> None:
        """The engine's state (every process must call it): the trainable parameters (adapter and gate), the
        optimizer and the schedule. The frozen base is left out: it is the model the run starts from, loaded again
        on resume, and it would make every checkpoint the size of the base (fp32 SmolLM2: 589 of its 925 MB).

        DeepSpeed's ``exclude_frozen_parameters`` walks ``named_parameters()``, which names a tied weight once, so
        the other name of a tied embedding (``lm_head.weight``: 113 MB in SmolLM2) stayed in the state dict; every
        name of a frozen tensor is dropped here."""
        engine = self.engine
        module_state_dict = engine.module_state_dict

        def trainable_state_dict(*args, exclude_frozen_parameters=False, **kwargs):
            sd = module_state_dict(*args, exclude_frozen_parameters=exclude_frozen_parameters, **kwargs)
            if exclude_frozen_parameters and sd is not None:
                for name, p in engine.module.named_parameters(remove_duplicate=False):
                    if not p.requires_grad:
                        sd.pop(name, None)
            return sd

        engine.module_state_dict = trainable_state_dict
        try:
            engine.save_checkpoint(str(folder), tag=tag, exclude_frozen_parameters=True)
        finally:
            del engine.module_state_dict  # the class's method again

    def load_engine(self, folder: Path, tag: str) -> None:
        """Restore :meth:`save_engine`'s state into the engine; the frozen base stays as loaded (a non-strict load)."""
        self.engine.load_checkpoint(str(folder), tag=tag, load_module_strict=False)

    def save_adapter(self, folder: Path) -> None:
        """peft's ``save_pretrained`` of the adapter into ``folder`` (main process; every process must call it)."""
        with self.gathered(trainable_only=True):
            if self.is_main:
                self.model.save_pretrained(folder)
