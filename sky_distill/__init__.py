"""sky-distill: chain-of-thought distillation — generate, verify, train, evaluate."""

__version__ = "0.1.0"
