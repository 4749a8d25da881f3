"""Where the rules come from: short citations attached to every number a rule produces."""

SEED_RULES = "seed 000 (LoRA hyperparameter scaling rules; tinker-cookbook hyperparam_utils)"
SEED_ARTICLE = "seed 001 (article on LoRA Without Regret, Thinking Machines 2025)"
SEED_RANK_ALPHA = "seed 002 (Choosing LoRA rank and alpha)"
SEED_DOCTRINE = "seed 003 (LoRA/QLoRA doctrine)"
TINKER_HPARAMS = "tinker-cookbook hyperparam_utils.get_lr (LR = 5e-5 * M * (2000/hidden)^P)"
