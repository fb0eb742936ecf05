"""OpenAI's Images API and OpenAI-compatible image servers, behind ``base.Provider``."""

from imagegen.providers.openai_compat.provider import OpenAICompatProvider, normalise_base_url
from imagegen.providers.openai_compat.rules import ModelRules, rules_for, size_for

__all__ = ["ModelRules", "OpenAICompatProvider", "normalise_base_url", "rules_for", "size_for"]
