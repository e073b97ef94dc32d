"""TEMPORARY: backend needs built straight from the tenants, until the app roles exist.

The lead replaces this with the needs the app roles (roles/nextcloud, roles/paheko)
hand over. Until then, deploy.py and the backend verify checks (tests/verify/
test_php.py, test_postgresql.py, test_redis.py, test_timers.py) both call
`stand_in_needs`, so they agree on what a host should have:
for every nextcloud or paheko instance on the host, a PHP pool with no code,
a database, a Redis (Nextcloud only) and a timer touching <home>/tmp/timer-ran
as the instance's user every minute.
"""

from __future__ import annotations

from assotic.needs import AppInstance, Database, HostNeeds, PhpPool, RedisInstance, Timer

STAND_IN_APPS = ("nextcloud", "paheko")
TIMER_MARK = "timer-ran"


def stand_in_needs(tenants, host_name: str) -> HostNeeds:
    needs = HostNeeds()
    for tenant in tenants:
        for app in tenant.apps_on(host_name):
            if app not in STAND_IN_APPS:
                continue
            instance = AppInstance(tenant.slug, app)
            needs.pools.append(PhpPool(instance, code_dirs=()))
            needs.databases.append(Database(name=instance.user, owner=instance.user,
                                            password_secret=instance.secret("db_password")))
            if app == "nextcloud":
                needs.redis.append(RedisInstance(instance, password_secret=instance.secret("redis_password")))
            needs.timers.append(Timer(
                unit=f"assotic-{app}-standin-{tenant.slug}",
                description=f"TEMPORARY stand-in job of {instance.user}",
                user=instance.user,
                command=("/usr/bin/touch", f"{instance.tmp_dir}/{TIMER_MARK}"),
                on_calendar="*:*:00",
                working_directory=instance.home,
                environment=(("HOME", instance.home),),
            ))
    return needs


def instances_of(needs: HostNeeds) -> list[AppInstance]:
    """Every instance that needs a Unix account, in need order."""
    found = [p.instance for p in needs.pools] + [r.instance for r in needs.redis]
    return list(dict.fromkeys(found))
