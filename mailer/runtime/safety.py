"""What a config is missing to run safely or at all, said before anything starts.

Two kinds of finding: a **warning** (it runs, but less safely than an operator would assume: without
`[trust]` any sender can claim a registered address), and a **missing driver** (a `postgresql://`
database or a `redis://`/`amqp://` broker on the base install), which stops every command with one line
naming the extra to install, instead of a traceback at the first connection.
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

from mailer.config import Config

# URL scheme -> (import name of the driver, the setup.cfg extra that installs it)
DRIVERS = {
    "postgresql": ("psycopg", "postgres"),
    "redis": ("redis", "redis"),
    "rediss": ("redis", "redis"),
    "amqp": ("pika", "rabbitmq"),
    "amqps": ("pika", "rabbitmq"),
}


def warnings(config: Config) -> list[str]:
    found = []
    if config.trust is None:
        found.append(f"{config.source}: trust: not configured, so any sender can claim a registered address "
                     "(only a DMARC failure reported in the mail's Authentication-Results is refused); set "
                     "[trust] authserv_id to the id your MTA writes in Authentication-Results")
    return found


def missing_drivers(config: Config) -> str | None:
    """One line naming the keys whose drivers are not installed and the extras that install them."""
    needed = {"database.url": config.database_url}
    if not config.broker.embedded:
        needed["broker.url"] = config.broker.url
    keys, modules, extras = [], [], []
    for key, url in needed.items():
        scheme = urlsplit(url).scheme.split("+", 1)[0]
        driver = DRIVERS.get(scheme)
        if driver is None or importlib.util.find_spec(driver[0]) is not None:
            continue
        keys.append(key)
        modules.append(driver[0])
        extras.append(driver[1])
    if not keys:
        return None
    return (f"{config.source}: {', '.join(keys)}: the driver{'s' if len(keys) > 1 else ''} "
            f"{', '.join(modules)} {'are' if len(keys) > 1 else 'is'} not installed; "
            f"pip install 'supportd[{','.join(dict.fromkeys(extras))}]'")
