"""One problem, one ticket: the labelled corpus through the real pipeline, measured pairwise."""

from __future__ import annotations

from collections import Counter
from email import message_from_bytes
from itertools import combinations
from pathlib import Path

from sqlalchemy import select

from mailer.app import App
from mailer.demo.embedded import SmtpSink
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Outbox, RawMessage, Ticket
from sla.calendar import parse_duration
from tests import dedup_corpus
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once


def test_dedup_corpus_precision_and_recall(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                          tmp_path: Path) -> None:
    path, config = make_config()
    app = prepared_app(config, tmp_path)
    (tmp_path / "corpus.csv").write_text(dedup_corpus.accounts_csv())
    import_accounts(app.db, tmp_path / "corpus.csv")
    first, second = dedup_corpus.build()

    mailbox.append(*(m.raw for m in first))
    assert run_once(path) == 0
    acks = {message_from_bytes(d.data)["In-Reply-To"]: message_from_bytes(d.data)["Message-ID"]
            for d in smtp_sink.delivered}
    replies = [dedup_corpus.thread_reply(t, acks[t.replies_to_ack_of], n) for n, t in enumerate(second)]
    mailbox.append(*(m.raw for m in replies))
    assert run_once(path) == 0
    corpus = first + replies
    assert len(corpus) >= 150

    with app.db.session() as session:
        ticket_of = [row.ticket_id for row in session.scalars(select(RawMessage).order_by(RawMessage.uid))]
        tickets = {t.id: t for t in session.scalars(select(Ticket))}
        purposes = Counter((o.ticket_id, o.purpose) for o in session.scalars(select(Outbox)))
    assert len(ticket_of) == len(corpus) and None not in ticket_of

    tp = fp = fn = cross_customer = 0
    for (i, a), (j, b) in combinations(enumerate(corpus), 2):
        same_truth, same_ticket = a.family == b.family, ticket_of[i] == ticket_of[j]
        tp += same_truth and same_ticket
        fp += same_ticket and not same_truth
        fn += same_truth and not same_ticket
        cross_customer += same_ticket and a.customer != b.customer
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"\ndedup corpus: {len(corpus)} mails, {len(set(m.family for m in corpus))} families, "
          f"{len(tickets)} tickets; pairs TP {tp} FP {fp} FN {fn}; "
          f"precision {precision:.3f} recall {recall:.3f}; cross-customer merges {cross_customer}")
    assert cross_customer == 0
    assert recall >= 0.95 and precision >= 0.95
    assert len(tickets) == len({m.family for m in corpus})

    # One acknowledgement per ticket, at most one "we already have this" per ticket, none for thread replies.
    assert all(purposes[(t, "ack")] == 1 for t in tickets)
    assert all(purposes[(t, "repeat_notice")] <= 1 for t in tickets)
    assert sum(purposes[(t, "repeat_notice")] for t in tickets) == len({m.family for m in first
                                                                         if m.kind not in ("original",
                                                                                           "different TxID",
                                                                                           "other topic",
                                                                                           "exact copy")})
    # Repeats never restart the clock: every due date is still counted from the first mail's arrival.
    desk = App.from_config(config)
    for ticket in tickets.values():  # each on its own policy's calendar (security runs on the shipped 24x7)
        calendar, policy = desk.sla_for(ticket)
        assert ticket.first_response_due == calendar.add(ticket.created_at, parse_duration(policy.first_response))
    app.close()
