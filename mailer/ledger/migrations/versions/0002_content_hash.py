"""content hash of messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 06:52:21.775199
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.ledger.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_ticket_messages_content_hash'), ['content_hash'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_messages_content_hash'))
        batch_op.drop_column('content_hash')

