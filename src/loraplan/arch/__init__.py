"""Model references -> one Architecture: every 2-D weight with its role, plus the config facts."""

from loraplan.arch.model import Architecture, Role, Weight
from loraplan.arch.sources import load_architecture

__all__ = ["Architecture", "Role", "Weight", "load_architecture"]
