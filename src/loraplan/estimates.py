"""Estimates of memory, compute and time: labelled as estimates, with the assumptions named.

Memory: weights at the base precision; LoRA adapter in bf16 with fp32 gradients and AdamW's two
fp32 moments; activations by Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"): 34*s*b*h bytes per layer in 16-bit without recomputation (flash attention
removes the s^2 term), 2*s*b*h per layer plus one layer's worth with full checkpointing, plus
fp32 logits s*b*V*4. Compute: a forward-backward costs 6 FLOPs per active parameter per token
for full fine-tuning and about 4 for LoRA (no weight gradients of the frozen base: ~2/3,
seed 001). GPU-hours assume 40% of the GPU's dense bf16 peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraplan.arch.model import Architecture

BYTES_PER_PARAM = {"bf16": 2.0, "8bit": 1.0, "4bit": 0.5}
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


def compute(arch: Architecture, tokens_processed: int | None, gpu: str) -> ComputeEstimate:
    lora = 4.0 * arch.active_params
    full = 6.0 * arch.active_params
    hours = None
    if tokens_processed is not None and gpu in GPU_BF16_TFLOPS:
        hours = tokens_processed * lora / (GPU_BF16_TFLOPS[gpu] * 1e12 * MFU) / 3600
    return ComputeEstimate(lora, full, tokens_processed, gpu, hours)
