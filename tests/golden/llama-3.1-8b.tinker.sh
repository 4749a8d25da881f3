# Written by loraplan. Tinker fixes alpha = 32 and adapts every weight matrix.
python -m tinker_cookbook.recipes.chat_sl.train \
    model_name=meta-llama/Llama-3.1-8B \
    dataset=data/train.jsonl \
    learning_rate=0.0002019790446850046 \
    num_epochs=1 \
    lora_rank=32 \
    max_length=2048 \
    batch_size=64 \
    max_steps=313 \
    lr_schedule=linear
