"""Webhooks: Standard Webhooks signing, the address policy, the sender and the outbox worker."""
