"""The experiment matrix: schema, loading, expansion into runs, and the pre-flight checks."""
