"""assotic: shared Python for the deploy (schema, secrets, preflight checks, lab).

Nothing here talks to a host. pyinfra operations live in roles/<name>/.
"""
