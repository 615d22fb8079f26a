"""SDK internals: buffer, batches, sender, spool, transport. The public API is ``runstream``."""
