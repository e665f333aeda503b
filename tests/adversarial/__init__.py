"""Adversarial tests: real federations in which one party runs a *modified* node.

Every message, schema, plan and parameter a peer sends is untrusted input. Each test
here plays one attack from docs/security.md ("Attacks and defences") against real
node processes and asserts the safe behaviour.
"""
