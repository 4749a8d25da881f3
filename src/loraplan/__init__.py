"""loraplan: plan, check and count LoRA fine-tuning runs by the 'LoRA Without Regret' rules."""

__version__ = "0.1.0"
