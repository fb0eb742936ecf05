"""The Replicate provider.

- ``refs``: ``owner/name`` (official model, ``POST /v1/models/{o}/{n}/predictions``) or
  ``owner/name:<version>`` (``POST /v1/predictions``).
- ``schema`` / ``mapping`` / ``sizing``: read the model's input and output schema and map
  width, height and the image count onto it (fan-out beyond the model's per-prediction maximum).
- ``client`` / ``retry`` / ``errors``: the HTTP calls, the one retry wrapper, and the translation
  of every failure into ``imagegen.errors`` with the official client's exact error messages.
- ``run``: create (sync mode ``Prefer: wait``, ``Cancel-After``), record, poll to a terminal state
  within the deadline, report progress, and cancel upstream whatever is abandoned.
- ``provider``: ``ReplicateProvider`` and ``from_settings``.
"""

from imagegen.providers.replicate.provider import ReplicateProvider, from_settings
from imagegen.providers.replicate.refs import ModelRef
from imagegen.providers.replicate.retry import RetryPolicy

__all__ = ["ModelRef", "ReplicateProvider", "RetryPolicy", "from_settings"]
