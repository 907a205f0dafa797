"""outbox compose recipe for mails whose composition failed; ticket message kinds as long as purposes

Revision ID: 0007
Revises: 0010
Create Date: 2026-11-25 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('compose', sa.JSON(), nullable=True))
    # An outgoing message's kind is its purpose: "attachment_refused" did not fit in 16 characters.
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=16), type_=sa.String(length=32))


def downgrade() -> None:
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=32), type_=sa.String(length=16))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('compose')
