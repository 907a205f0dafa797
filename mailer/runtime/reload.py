"""SIGHUP: a new `App` from the config file as it is now, or the reason it was refused.

The new App is built and checked completely (config, rules, calendars, templates) before anything
switches to it, so a broken file leaves the running desk untouched. It shares the running database
engine; the SMTP connections are kept when the relay settings did not change. Settings that name
connections or listeners (mailboxes, database, broker, LMTP, storage) take effect at the next start:
changing them under running intake loops could serve a mailbox twice or lose a checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import TemplateError

from mailer.app import App
from mailer.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from mailer.runtime.workers import Workers

log = logging.getLogger(__name__)

RESTART_ONLY = ("mailboxes", "database_url", "broker", "lmtp_listen", "http_listen", "storage_dir",
                "max_message_bytes", "encryption_keys_env", "secret_env")


class ReloadRefused(Exception):
    """The new configuration cannot be used; the message is the usual `file: key: reason`."""


def reloaded(app: App) -> App:
    """The App for the config file now on disk; raises ReloadRefused and changes nothing if it is unusable."""
    try:
        config = load_config(app.config.source)
    except ConfigError as exc:
        raise ReloadRefused(str(exc)) from None
    config = _keep_restart_only(app.config, config)
    new = App(config=config, db=app.db)
    new.__dict__["links"] = app.links  # what readiness reports about the connections carries on
    new.cpu = app.cpu  # the parsing pool, and the order batches write in, carry on too
    new.__dict__["batch_order"] = app.batch_order
    _build(new)
    if config.smtp == app.config.smtp and "smtp" in app.__dict__:
        new.__dict__["smtp"] = app.smtp  # the same relay: keep the open connections
    return new


def reload_workers(workers: Workers) -> list[App]:
    """SIGHUP in `supportd worker`: the next message runs with the new App; returns the App retired."""
    try:
        new = reloaded(workers.app)
    except ReloadRefused as exc:
        log.error("reload refused, the running configuration stays: %s", exc)
        return []
    old, workers.app = workers.app, new
    log.info("configuration reloaded from %s", new.config.source)
    return [old]


def retire(old: App, new: App) -> None:
    """Close what the old App had of its own once nothing uses it (the database engine is shared)."""
    if "smtp" in old.__dict__ and new.__dict__.get("smtp") is not old.smtp:
        old.smtp.close()


def _keep_restart_only(running: Config, new: Config) -> Config:
    changed = [name for name in RESTART_ONLY if getattr(running, name) != getattr(new, name)]
    for name in changed:
        log.warning("%s: %s: changed; takes effect at the next start", new.source, name)
    return replace(new, **{name: getattr(running, name) for name in RESTART_ONLY})


def _build(app: App) -> None:
    """Make every cached part now, so that what cannot be built is refused before the switch."""
    source = app.config.source
    try:
        app.router  # noqa: B018 - built for its errors
        app.calendars  # noqa: B018
    except (ValueError, KeyError) as exc:
        raise ReloadRefused(f"{source}: (rules or calendars): {exc}") from None
    env = app.renderer.env
    for name in env.list_templates(extensions=["j2"]):
        try:
            env.get_template(name)
        except TemplateError as exc:
            where = Path(app.config.templates_dir or ".") / name
            raise ReloadRefused(f"{where}: template: {exc}") from None
