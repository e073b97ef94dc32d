"""`python -m lab up|down|status|restart NAME`: the lab's hosts (lab/harness.py) and its mail
relay (lab/relay.py), brought up and down together.

    python -m lab up             build missing images, start the relay and every lab host
    python -m lab down           remove the lab containers and the relay (images and keys are kept)
    python -m lab status         one line per lab host, and the relay's
    python -m lab restart NAME   restart one host and wait until it is ready again
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from lab import relay
from lab.harness import (LAB_HOSTS, LabError, debian_release, docker_client, ensure_images,
                         ensure_secrets_key, ensure_ssh_key, get_container, prepare_container,
                         restart_host, say, start_container, wait_until_ready, write_known_hosts)



def up() -> None:
    client = docker_client(start=True)
    ensure_images(client)
    pubkey = ensure_ssh_key()
    key_id = ensure_secrets_key()  # first: it decides which containers can be reused
    for h in LAB_HOSTS:  # start all first: they boot in parallel
        start_container(client, h, key_id, relay.extra_hosts())
    # The relay after the hosts are booting (its first start installs packages meanwhile);
    # the hosts only need it once deployed.
    relay.start_relay(client, key_id)
    network = relay.ensure_network(client)
    for h in LAB_HOSTS:
        relay.connect(network, get_container(client, h))
    for h in LAB_HOSTS:
        wait_until_ready(h.name, client)
        prepare_container(client, h, pubkey)
        wait_until_ready(h.name, client)  # sshd may have just been restarted with new keys
        say(f"{h.name} is ready")
    write_known_hosts(client)
    say("up")


def down() -> None:
    client = docker_client(start=False)
    for h in LAB_HOSTS:
        container = get_container(client, h)
        if container is None:
            say(f"{h.name}: no container")
        else:
            container.remove(force=True)
            say(f"{h.name}: removed")
    relay.remove_relay(client)


def status() -> None:
    try:
        client = docker_client(start=False)
    except LabError:
        client = None
    for h in LAB_HOSTS:
        if client is None:
            state = "no docker engine"
        else:
            container = get_container(client, h)
            state = container.status if container else "absent"
        print(
            f"{h.name:<8} {debian_release(h.suite):<10} {state:<12} 127.0.0.1:{h.ssh_port}"
        )
    if client is not None:
        container = relay.get_relay(client)
        state = container.status if container else "absent"
        print(f"{'relay':<8} {debian_release(relay.RELAY_SUITE):<10} {state:<12} "
              f"{relay.RELAY_ADDRESS}:{relay.RELAY_PORT} (mail relay, not deployed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab", description="The local lab (see docs/lab.md)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="build missing images, start and prepare every lab host")
    commands.add_parser("down", help="remove the lab containers (images and .lab/ssh are kept)")
    commands.add_parser("status", help="one line per lab host")
    restart = commands.add_parser("restart", help="restart one host, wait until it is ready")
    restart.add_argument("name", choices=[h.name for h in LAB_HOSTS])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            status()
        elif args.command == "restart":
            restart_host(args.name)
    except LabError as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
