from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained('meta-llama/Llama-3.1-8B', dtype='auto')
config = LoraConfig(
    task_type='CAUSAL_LM',
    bias='none',
    r=32,
    lora_alpha=32,
    lora_dropout=0.0,
    target_modules=['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj'],
    use_rslora=False,
    use_dora=False,
    init_lora_weights=True,
)
model = get_peft_model(model, config)
model.print_trainable_parameters()
