"""Reading what runs wrote: one log into steps, segments and a status; logs on disk into runs."""
