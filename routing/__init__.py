"""Deciding, never transforming: who sent this (`verify`), is it automatic (`autoreply`), which ticket does
it belong to (`dedup`), and which queue and priority (`rules`)."""
