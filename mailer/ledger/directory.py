"""Where verification looks accounts up: the imported table, or the exchange's own user database, live.

`[accounts] source = "table"` (the default) reads the `accounts` table that `supportd accounts import`
fills, in the pipeline's own transaction. `source = "sql"` runs the desk's parameterized query against
its own URL (a read replica, any SQLAlchemy dialect), so the desk need not copy its user base; answers
are kept in a bounded cache for a while (negative answers for less time, so a new user is recognised
soon). Both are one `Directory`: `find(address) -> AccountRef | None`, with the normalized address.

A replica that is down or slow is nobody's mistake in the mail: `DirectoryUnavailable` is transient,
the mail stays pending and is retried, never quarantined.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, create_engine, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from mailer.ledger.db import Account, Database
from mailer.runtime.transient import ServiceUnavailable
from parsing.language import normalize_tag
from routing.verify import AccountRef, normalize_address

if TYPE_CHECKING:
    from mailer.config import AccountsConfig

log = logging.getLogger(__name__)

PARAMETER = "email"
COLUMNS = ("email", "user_id", "language", "display_name", "anti_phishing_code")


class DirectoryUnavailable(ServiceUnavailable):
    """The live directory did not answer (down, slow, refused the query): retry the mail later."""


class Directory(Protocol):
    def find(self, address: str, session: Session | None = None) -> AccountRef | None:
        """The account registered under this normalized address; `session` is the caller's transaction."""

    def find_many(self, addresses: Collection[str], session: Session) -> dict[str, AccountRef | None]:
        """Answers for a batch's senders at once, for those the source can answer that way (absent: ask `find`)."""

    def close(self) -> None: ...


class TableDirectory:
    """The imported `accounts` table, read in the caller's transaction when it has one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, address: str, session: Session | None = None) -> AccountRef | None:
        if session is None:
            with self.db.reading() as reading:
                return self._lookup(reading, address)
        return self._lookup(session, address)

    @staticmethod
    def _lookup(session: Session, address: str) -> AccountRef | None:
        row = session.execute(_ACCOUNT_BY_EMAIL, {"address": address}).first()
        return AccountRef(*row) if row is not None else None

    def find_many(self, addresses: Collection[str], session: Session) -> dict[str, AccountRef | None]:
        found: dict[str, AccountRef | None] = dict.fromkeys(addresses)
        if found:
            for row in session.execute(_ACCOUNTS_BY_EMAIL.where(Account.email.in_(list(found)))):
                found[row.email] = AccountRef(*row)
        return found

    def close(self) -> None:
        pass


_MISSING = object()
# Built once: building and keying the statement for every mail cost more than running it.
# Columns, not the entity: nothing is kept in the session for a look-up made for every mail.
_ACCOUNTS_BY_EMAIL = select(Account.id, Account.email, Account.user_id, Account.language, Account.display_name,
                            Account.anti_phishing_code)
_ACCOUNT_BY_EMAIL = _ACCOUNTS_BY_EMAIL.where(Account.email == bindparam("address", type_=Account.email.type))


class TtlCache:
    """A bounded map whose entries expire: least recently used out first; thread-safe."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.clock = size, clock
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The value, or `_MISSING` when absent or expired."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return _MISSING
            if item[0] <= self.clock():
                del self._items[key]
                return _MISSING
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: Any, seconds: float) -> None:
        if self.size <= 0 or seconds <= 0:
            return
        with self._lock:
            self._items[key] = (self.clock() + seconds, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class SqlDirectory:
    """The desk's query against its own database, one address at a time, answers cached."""

    def __init__(self, config: AccountsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        assert config.url is not None and config.query is not None
        self.config = config
        self.engine = directory_engine(config.url, config.timeout)
        self.query = text(config.query)
        self.cache = TtlCache(config.cache_size, clock)

    def find_many(self, addresses: Collection[str], session: Session) -> dict[str, AccountRef | None]:
        return {}  # one query per address, asked by `find` when the mail gets there (and cached)

    def find(self, address: str, session: Session | None = None) -> AccountRef | None:
        cached = self.cache.get(address)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        account = self._query(address)
        self.cache.put(address, account,
                       self.config.cache_seconds if account else self.config.negative_cache_seconds)
        return account

    def _query(self, address: str) -> AccountRef | None:
        try:
            with self.engine.connect() as connection:
                result = connection.execute(self.query, {PARAMETER: address})
                columns = set(result.keys())
                missing = [c for c in ("email", "user_id") if c not in columns]
                if missing:
                    raise DirectoryUnavailable(f"accounts.query returns no {', '.join(missing)} column")
                rows = result.mappings().fetchmany(10)
        except SQLAlchemyError as exc:
            raise DirectoryUnavailable(f"account directory {self.engine.url.render_as_string()}: "
                                       f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        return _one_account(rows, address)

    def close(self) -> None:
        self.engine.dispose()


def _one_account(rows: list[Mapping[str, Any]], address: str) -> AccountRef | None:
    """The account whose address is the sender's; none if the query found none, or two different users."""
    matching = [r for r in rows if normalize_address(str(r["email"] or "")) == address and r["user_id"] is not None]
    users = {str(r["user_id"]) for r in matching}
    if len(users) != 1:
        if len(users) > 1:
            log.warning("account directory: %d users share one address; treating it as unregistered", len(users))
        return None
    row = matching[0]
    # A tag the desk does not answer in (or none) leaves the choice to the mail's own language.
    language = (normalize_tag(str(row["language"])) or "") if row.get("language") else ""
    return AccountRef(None, address, str(row["user_id"])[:64], language, str(row.get("display_name") or "")[:200],
                      str(row["anti_phishing_code"])[:64] if row.get("anti_phishing_code") else None)


def directory_engine(url: str, timeout: float) -> Engine:
    """A small pool with connect and statement time limits where the driver has them."""
    parsed = _driver_url(url)
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        connect_args = {"connect_timeout": max(1, round(timeout)),
                        "options": f"-c statement_timeout={int(timeout * 1000)} -c default_transaction_read_only=on"}
    elif backend == "sqlite":
        connect_args = {"timeout": timeout, "check_same_thread": False}
    elif backend in ("mysql", "mariadb"):
        connect_args = {"connect_timeout": max(1, round(timeout)), "read_timeout": max(1, round(timeout))}
    if backend == "sqlite":
        return create_engine(parsed, connect_args=connect_args)
    return create_engine(parsed, connect_args=connect_args, pool_size=4, max_overflow=4, pool_pre_ping=True,
                         pool_timeout=timeout)


def _driver_url(url: str) -> Any:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver supportd installs
    return parsed


def check_url(url: str) -> str | None:
    """Why the URL cannot reach a database from here, or None."""
    try:
        parsed = _driver_url(url)
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:  # before its base class, ArgumentError
        return f"names a dialect SQLAlchemy does not know: {url.split(':', 1)[0]!r}"
    except ArgumentError:
        return f"is not a database URL (dialect+driver://user@host/database): {url!r}"
    except ImportError as exc:
        return f"the driver for {url.split(':', 1)[0]!r} is not installed ({exc.name or exc})"
    return None


def check_query(query: str) -> str | None:
    """Why the query cannot serve as the directory, or None. It gets exactly one parameter, :email."""
    if not re.match(r"\s*(select|with)\b", query, re.IGNORECASE):
        return "must be a SELECT (the directory only reads)"
    names = set(text(query).compile().params)
    if PARAMETER not in names:
        return "must use the parameter :email (the sender's normalized address), e.g. WHERE lower(email) = :email"
    if names - {PARAMETER}:
        unknown = ", ".join(f":{n}" for n in sorted(names - {PARAMETER}))
        return f"uses parameter(s) {unknown}; only :email is given"
    return None


def build_directory(config: AccountsConfig, db: Database) -> Directory:
    return SqlDirectory(config) if config.source == "sql" else TableDirectory(db)
