"""Estimates of memory, compute and time: labelled as estimates, with the assumptions named.

Memory: weights at the base precision; LoRA adapter in bf16 with fp32 gradients and AdamW's two
fp32 moments; activations by Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"): 34*s*b*h bytes per layer in 16-bit without recomputation (flash attention
removes the s^2 term), 2*s*b*h per layer plus one layer's worth with full checkpointing, plus
fp32 logits s*b*V*4. Compute: a forward-backward costs 6 FLOPs per active parameter per token
for full fine-tuning and about 4 for LoRA (no weight gradients of the frozen base: ~2/3,
LoRA Without Regret). GPU-hours assume 40% of the GPU's dense bf16 peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loraplan.arch.model import Architecture

BYTES_PER_PARAM = {"bf16": 2.0, "8bit": 1.0, "4bit": 0.5}
# Memory per device in GB as sold (NVIDIA/AMD datasheets), read as GiB below.
GPU_MEMORY_GB = {"h100": 80.0, "h200": 141.0, "b200": 192.0, "a100": 80.0, "l40s": 48.0, "a10g": 24.0,
                 "rtx4090": 24.0, "mi300x": 192.0}
GPU_BF16_TFLOPS = {"h100": 989.0, "h200": 989.0, "b200": 2250.0, "a100": 312.0, "l40s": 362.0,
                   "a10g": 125.0, "rtx4090": 165.0, "mi300x": 1307.0}
MFU = 0.40
GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: dict[str, float]
    adapter_gib: float
    adapter_grads_gib: float
    optimizer_gib: float
    activations_gib: float
    activations_checkpointed_gib: float
    logits_gib: float

    def total_gib(self, precision: str, checkpointing: bool = True) -> float:
        acts = self.activations_checkpointed_gib if checkpointing else self.activations_gib
        return (self.weights_gib[precision] + self.adapter_gib + self.adapter_grads_gib + self.optimizer_gib
                + acts + self.logits_gib)


@dataclass(frozen=True)
class ComputeEstimate:
    flops_per_token_lora: float
    flops_per_token_full: float
    tokens_processed: int | None
    gpu: str
    gpu_hours: float | None


def memory(arch: Architecture, trainable: int, seq_len: int, micro_batch: int) -> MemoryEstimate:
    per_layer = seq_len * micro_batch * arch.hidden_size
    activations = 34 * per_layer * arch.num_layers
    checkpointed = 2 * per_layer * arch.num_layers + 34 * per_layer
    return MemoryEstimate(
        weights_gib={k: arch.total_params * b / GIB for k, b in BYTES_PER_PARAM.items()},
        adapter_gib=trainable * 2 / GIB,
        adapter_grads_gib=trainable * 4 / GIB,
        optimizer_gib=trainable * 8 / GIB,
        activations_gib=activations / GIB,
        activations_checkpointed_gib=checkpointed / GIB,
        logits_gib=seq_len * micro_batch * arch.vocab_size * 4 / GIB,
    )


@dataclass(frozen=True)
class MemoryVerdict:
    """Whether the run fits on `devices` x `gpu`, per device, for each weight precision.

    Sharding assumed with more than one device: frozen weights, adapter, gradients and AdamW state split
    evenly (FSDP / ZeRO-3); activations and logits are per device at its micro batch and sequence length.
    per_device_gib: precision -> GiB needed on each device (activation checkpointing on).
    min_devices: precision -> fewest devices of this GPU that fit it (None: not even one device's
    activations fit, or the GPU is unknown).
    """

    gpu: str
    devices: int
    capacity_gib: float | None
    per_device_gib: dict[str, float]
    fits: dict[str, bool | None]
    min_devices: dict[str, int | None]
    seq_len: int
    micro_batch: int

    def line(self) -> str:
        where = f"{self.devices} x {self.gpu.upper()}"
        if self.capacity_gib is None:
            return f"memory per device on {where}: unknown GPU, no verdict"
        figures = ", ".join(f"{p} {g:.1f}" for p, g in self.per_device_gib.items())
        fitting = [p for p, ok in self.fits.items() if ok]
        verdict = f"fits in {fitting[0]}" if fitting else "does NOT fit at any precision"
        sharded = " (weights and optimizer state sharded across devices)" if self.devices > 1 else ""
        return (f"memory per device on {where} ({self.capacity_gib:.0f} GiB each){sharded}: {figures} GiB "
                f"-> {verdict} (activations at sequence {self.seq_len} x micro batch {self.micro_batch}, "
                f"checkpointed)")


def verdict(mem: MemoryEstimate, gpu: str, devices: int, seq_len: int, micro_batch: int) -> MemoryVerdict:
    """Per-device need against the GPU's memory, with the sharding MemoryVerdict names."""
    capacity = GPU_MEMORY_GB[gpu] * 1e9 / GIB if gpu in GPU_MEMORY_GB else None
    state = mem.adapter_gib + mem.adapter_grads_gib + mem.optimizer_gib
    local = mem.activations_checkpointed_gib + mem.logits_gib
    per_device = {p: (w + state) / devices + local for p, w in mem.weights_gib.items()}
    fits: dict[str, bool | None] = {p: None if capacity is None else need <= capacity
                                    for p, need in per_device.items()}
    least: dict[str, int | None] = {}
    for p, w in mem.weights_gib.items():
        room = None if capacity is None else capacity - local
        least[p] = None if room is None or room <= 0 else max(1, math.ceil((w + state) / room))
    return MemoryVerdict(gpu, devices, capacity, per_device, fits, least, seq_len, micro_batch)


def compute(arch: Architecture, tokens_processed: int | None, gpu: str) -> ComputeEstimate:
    lora = 4.0 * arch.active_params
    full = 6.0 * arch.active_params
    hours = None
    if tokens_processed is not None and gpu in GPU_BF16_TFLOPS:
        hours = tokens_processed * lora / (GPU_BF16_TFLOPS[gpu] * 1e12 * MFU) / 3600
    return ComputeEstimate(lora, full, tokens_processed, gpu, hours)
