"""The roles, one concern each; deploy.py runs them in order.

Shared roles own one service each and take lists of needs (assotic/needs.py):
  base (packages, sysadmins, sshd, firewall, security updates), accounts (the Unix account
  and folders of every app instance), postgresql, redis, php (PHP-FPM pools), nginx and
  tls (vhosts, certificates), timers, backup (restic jobs), backup_target (SFTP accounts).
App roles hand their needs to the shared roles, then deploy their own code and settings:
  nextcloud, paheko, mattermost (registered in roles/plan.py APP_ROLES), standin (the small
  PHP application that stands in for an upstream release that cannot be fetched).
Group roles run on hosts of their own: coturn (group turn), bbb (group bbb).

roles/plan.py is the planner: one HostPlan per host, read by deploy.py, the testinfra
checks and the operator commands. roles/remote_files.py and roles/prepared.py are the
helpers every role uses to write files and restart only on change.
"""
