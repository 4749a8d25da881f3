# Written by loraplan. Run with: python THIS_FILE
from unsloth import FastLanguageModel  # first: Unsloth patches transformers and TRL on import
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name='meta-llama/Llama-3.1-8B',
    max_seq_length=2048,
    load_in_4bit=False,
    load_in_8bit=False,
)

model = FastLanguageModel.get_peft_model(
    model=model,
    r=32,
    lora_alpha=32,
    lora_dropout=0.0,
    target_modules=['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj'],
    use_rslora=False,
    bias='none',
    use_gradient_checkpointing='unsloth',
    random_state=3407,
    init_lora_weights=True,
)

dataset = load_dataset('json', data_files='data/train.jsonl', split='train')

args = SFTConfig(
    output_dir='outputs',
    learning_rate=0.0002019790446850046,
    warmup_steps=10,
    weight_decay=0.0,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=16,
    num_train_epochs=1,
    max_steps=313,
    max_grad_norm=1,
    lr_scheduler_type='linear',
    optim='adamw_torch',
    assistant_only_loss=True,
    bf16=True,
)

trainer = SFTTrainer(
    model=model,
    processing_class=tokenizer,
    train_dataset=dataset,
    args=args,
)
trainer.train()
