# Written by loraplan.
from unsloth import FastLanguageModel
from trl import SFTConfig

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

args = SFTConfig(
    dataset_name='data/train.jsonl',
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
