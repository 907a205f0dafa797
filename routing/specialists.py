"""Specialists answer by mail: ticket addresses they reply to, and the commands their replies carry.

A ticket address is `support+<ticket>.<token>@domain`, the token an HMAC of the ticket number under the
desk's secret: unguessable, so knowing a ticket number is not enough to write into it. Commands stand
on their own lines at the top of a reply and never reach the customer:

    #note            the whole reply stays internal
    #close           close the ticket (after relaying any text)
    #pending         waiting on the customer (the resolution clock pauses)
    #assign <queue>  move the ticket to another queue
    #priority <p>    low | normal | high | urgent
    #merge <ticket>  fold this ticket into another one
    #qa <1-5> <text> the lead's score of a ticket sampled for quality review (stays internal)
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from mailer.config import PRIORITIES
from routing.feedback import parse_score
from routing.tokens import plus_address, sign

TOKEN_LENGTH = 10
_ADDRESS = re.compile(
    rf"^(?P<local>[^+@]+)\+(?P<ticket>\d{{1,12}})\.(?P<token>[a-z2-7]{{{TOKEN_LENGTH}}})@(?P<domain>.+)$",
    re.IGNORECASE)
_COMMAND = re.compile(r"^#(?P<name>[a-z]+)\b\s*(?P<argument>.*)$", re.IGNORECASE)
COMMANDS = ("note", "close", "pending", "assign", "priority", "merge", "qa")


def token_for(ticket_id: int, secret: bytes) -> str:
    return sign(secret, f"ticket:{ticket_id}", TOKEN_LENGTH)


def ticket_address(support_address: str, ticket_id: int, secret: bytes) -> str:
    return plus_address(support_address, f"{ticket_id}.{token_for(ticket_id, secret)}")


@dataclass(frozen=True)
class TicketAddress:
    ticket_id: int
    token_valid: bool


def find_ticket_address(recipients: list[str], support_address: str, secret: bytes) -> TicketAddress | None:
    """The ticket address among the recipients, if any, and whether its token is right."""
    local, _, domain = support_address.lower().partition("@")
    for recipient in recipients:
        match = _ADDRESS.match(recipient.strip().lower())
        if match and match["local"] == local and match["domain"] == domain:
            ticket_id = int(match["ticket"])
            valid = hmac.compare_digest(match["token"], token_for(ticket_id, secret))
            return TicketAddress(ticket_id, valid)
    return None


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


@dataclass(frozen=True)
class SpecialistReply:
    commands: tuple[Command, ...]
    text: str  # what the customer may read, commands removed
    errors: tuple[str, ...]  # unknown commands or bad arguments, in words

    @property
    def internal(self) -> bool:
        return any(c.name in ("note", "qa") for c in self.commands)


def parse_reply(text: str, queues: tuple[str, ...]) -> SpecialistReply:
    """Commands from the lines at the top of the reply (blank lines may separate them)."""
    lines = text.strip("\n").splitlines()
    commands, errors = [], []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        match = _COMMAND.match(line)
        if not line:
            index += 1
            continue
        if not match:
            break
        name, argument = match["name"].lower(), match["argument"].strip()
        problem = _check(name, argument, queues)
        if problem:
            errors.append(problem)
        commands.append(Command(name, argument))
        index += 1
        if name in ("note", "qa"):
            break  # everything after #note is the note itself, after #qa the reviewer's comment
    body = "\n".join(lines[index:]).strip()
    if any(c.name == "note" for c in commands) and commands[-1].argument:
        body = (commands[-1].argument + "\n" + body).strip()
    if commands and commands[-1].name == "qa":
        last = commands.pop()
        commands.append(Command("qa", (last.argument + "\n" + body).strip()))
        body = ""
    return SpecialistReply(tuple(commands), body, tuple(errors))


def _check(name: str, argument: str, queues: tuple[str, ...]) -> str | None:
    if name not in COMMANDS:
        return f"unknown command #{name} (known: {', '.join('#' + c for c in COMMANDS)})"
    if name == "assign" and argument not in queues:
        return f"#assign needs a queue: one of {', '.join(queues)}; got {argument or 'nothing'!r}"
    if name == "priority" and argument not in PRIORITIES:
        return f"#priority needs one of {', '.join(PRIORITIES)}; got {argument or 'nothing'!r}"
    if name == "qa" and parse_score(argument) is None:
        return f"#qa needs a score from 1 to 5, then any comment; got {argument or 'nothing'!r}"
    if name == "merge" and not argument.lstrip("#").isdigit():
        return f"#merge needs a ticket number; got {argument or 'nothing'!r}"
    return None
