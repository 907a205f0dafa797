"""satisfaction ratings and quality reviews

Revision ID: 0010
Revises: 0015
Create Date: 2026-11-25 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.ledger.db

revision = '0010'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ticket_ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('specialist', sa.String(length=320), nullable=False),
    sa.Column('nonce', sa.String(length=32), nullable=False),
    sa.Column('sent_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('rated_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id')
    )
    op.create_index('ix_ticket_ratings_queue', 'ticket_ratings', ['queue'], unique=False)
    op.create_index('ix_ticket_ratings_specialist', 'ticket_ratings', ['specialist'], unique=False)
    op.create_table('ticket_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('specialist', sa.String(length=320), nullable=False),
    sa.Column('week', sa.String(length=10), nullable=False),
    sa.Column('lead', sa.String(length=320), nullable=False),
    sa.Column('sent_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('scored_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id')
    )
    op.create_index('ix_ticket_reviews_queue', 'ticket_reviews', ['queue'], unique=False)
    op.create_index('ix_ticket_reviews_specialist', 'ticket_reviews', ['specialist'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ticket_reviews_specialist', table_name='ticket_reviews')
    op.drop_index('ix_ticket_reviews_queue', table_name='ticket_reviews')
    op.drop_table('ticket_reviews')
    op.drop_index('ix_ticket_ratings_specialist', table_name='ticket_ratings')
    op.drop_index('ix_ticket_ratings_queue', table_name='ticket_ratings')
    op.drop_table('ticket_ratings')
