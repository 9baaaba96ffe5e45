"""sky-distill: chain-of-thought distillation — generate, verify, train, evaluate."""

__version__ = "0.1.0"

from sky_distill.models.fingerprint import register_resolvers  # noqa: E402

register_resolvers()  # ${bootstrap_id:...} in conf/ (cached bootstrapped models), for every entry point
