"""An example production inventory: one web host, one BigBlueButton host, one TURN host.

Copy it to inventory/<name>.py and put your servers' addresses in ssh_hostname (these are
documentation addresses, RFC 5737: nothing answers there). Never deploy this file as is.

    make check INVENTORY=inventory/example.py     # validates it, touches no host

- web-1, web-2: Nextcloud, Paheko, Mattermost (Debian).
- bbb-1: BigBlueButton 3.0 on Ubuntu 22.04, a machine of its own (4+ cores, 4+ GB).
  Its API secret (bbb/bbb-1/api_secret) is generated; the SIP password is yours:
  `make secret-set NAME=sip/bbb-1/password`. Dial-in is optional: drop bbb_sip.
- turn-1: coturn on Debian 12 (its shared secret turn/static_auth_secret is generated).
  Point DNS names at the hosts before the first deploy: certificates need them.

Until the SIP password is in the store, `make check` refuses this inventory and says so.
"""

web = [
    ("web-1", {"ssh_hostname": "192.0.2.10", "ssh_user": "root"}),
    ("web-2", {"ssh_hostname": "192.0.2.11", "ssh_user": "root"}),  # the example tenants use it
]

bbb = [
    ("bbb-1", {
        "ssh_hostname": "192.0.2.20",
        "ssh_user": "root",
        "bbb_version": "jammy-300",  # BigBlueButton 3.0 (Ubuntu 22.04); "noble-400": 4.0 (24.04)
        "bbb_domain": "meet.example.org",
        "bbb_sip": {
            "provider": "sip.example-provider.fr",
            "username": "0912345678",
            "password_secret": "sip/bbb-1/password",
            "numbers": ["+33912345678"],
            "provider_ips": ["198.51.100.0/24"],
            "mask_caller_id": True,
            "pin_attempts": 3,
        },
    }),
]

turn = [
    ("turn-1", {
        "ssh_hostname": "192.0.2.30",
        "ssh_user": "root",
        "turn_domain": "turn.example.org",
    }),
]
