"""The pipeline's stages (listed in order in mailer/pipeline.py), the state a mail carries through them,
and what they share: composing outbox rows, SLA alerts, the CPU part done ahead."""
