"""A tiny random-weight model folder with the example tokenizer: what a trainer can load offline in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"


def tiny_llama(folder: Path) -> Path:
    """A 2-layer Llama (hidden 64) saved with safetensors, the example ChatML tokenizer beside it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(EXAMPLES / "tokenizer"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    for item in (EXAMPLES / "tokenizer").iterdir():
        shutil.copy(item, folder / item.name)
    return folder
