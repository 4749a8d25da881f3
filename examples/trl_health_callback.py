"""LoraHealthCallback in TRL's SFTTrainer: adapter update norms in the trainer's logs, a warning with the fix.

Runs on a CPU in about a minute: a 2-layer random-init Llama sized to the example tokenizer, the example chat
corpus, alpha 512 at rank 4 (scale 128) and LR 1e-2, so the callback has something to warn about.

    python examples/trl_health_callback.py
"""

from pathlib import Path

from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from loraplan.train import LoraHealthCallback

HERE = Path(__file__).parent
tokenizer = AutoTokenizer.from_pretrained(HERE / "tokenizer")
model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256,
                                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4))
trainer = SFTTrainer(
    model=model,
    args=SFTConfig(output_dir="/tmp/trl-health", max_steps=20, per_device_train_batch_size=4, learning_rate=1e-2,
                   logging_steps=5, max_length=128, assistant_only_loss=True, report_to=[], use_cpu=True),
    train_dataset=load_dataset("json", data_files=str(HERE / "chat.jsonl"), split="train"),
    processing_class=tokenizer,
    peft_config=LoraConfig(r=4, lora_alpha=512, target_modules="all-linear"),
)
health = LoraHealthCallback.install(trainer, every=5)  # first in line: W&B / TensorBoard see its metrics
trainer.train()
print(health.summary()["status"], [h for h in trainer.state.log_history if "lora/update_ratio" in h][-1])
