"""Investigation tools: one-off measurements that answered a question, kept to re-run; not part of
`make bench` or any recurring benchmark (see README.md here)."""
