"""The operator commands: what a volunteer sysadmin runs from the Makefile, on the deploy machine.

check, schema, secrets, restore, update, drill, backup status, BigBlueButton check. They read
the inventory as pyinfra does, take each host's plan from the roles (roles.plan), and reach
hosts over SSH through one helper (commands/remote.py). They sit on top: the roles and the
model (assotic/) never import them (the import contract in .importlinter keeps it so).
"""
