"""Where the rules come from: short citations of public references, and each reference's URL.

Every number a rule produces carries one of these labels; `references_in` maps the labels found in
some texts to their URLs, so an explanation can list them once at the end. Only published work is
named (the article, tinker-cookbook's files, papers); nothing points at a private document.
"""

from __future__ import annotations

from collections.abc import Iterable

ARTICLE = "LoRA Without Regret (Thinking Machines, 2025)"
HPARAM_UTILS = "tinker-cookbook hyperparam_utils.py"
CHAT_SL = "tinker-cookbook recipes/chat_sl sweep"
RSLORA = "rsLoRA (Kalajdzievski 2023)"
BIDERMAN = "LoRA Learns Less and Forgets Less (Biderman et al. 2024)"
KORTHIKANTI = "Reducing Activation Recomputation (Korthikanti et al. 2022)"

REFERENCES: dict[str, str] = {
    ARTICLE: "https://thinkingmachines.ai/blog/lora/",
    HPARAM_UTILS: "https://github.com/thinking-machines-lab/tinker-cookbook/blob/main/tinker_cookbook/hyperparam_utils.py",
    CHAT_SL: "https://github.com/thinking-machines-lab/tinker-cookbook/tree/main/tinker_cookbook/recipes/chat_sl",
    RSLORA: "https://arxiv.org/abs/2312.03732",
    BIDERMAN: "https://arxiv.org/abs/2405.09673",
    KORTHIKANTI: "https://arxiv.org/abs/2205.05198",
}

SEED_ARTICLE = ARTICLE
SEED_RULES = f"{HPARAM_UTILS}; {ARTICLE}"
SEED_RANK_ALPHA = RSLORA
SEED_DOCTRINE = f"{ARTICLE}, capacity in bits (~2 bits per parameter)"
TINKER_HPARAMS = f"{HPARAM_UTILS} get_lr (LR = 5e-5 x 10 for LoRA x (2000/hidden)^P)"


# Names that stand for a reference in texts written by other tools (a calibration file names its sweep file).
ALIASES = {"tinker_cookbook_sft_sweep": CHAT_SL}


def references_in(texts: Iterable[str]) -> list[tuple[str, str]]:
    """The references named in `texts`, in first-seen order, with their URLs."""
    joined = "\n".join(texts)
    seen: dict[str, int] = {}
    for name in [*REFERENCES, *ALIASES]:
        if (at := joined.find(name)) >= 0:
            label = ALIASES.get(name, name)
            seen[label] = min(at, seen.get(label, at))
    return [(label, REFERENCES[label]) for label in sorted(seen, key=seen.__getitem__)]
